//! What a change of openapi.yaml breaks: the spec is walked operation by
//! operation (`$ref`s resolved) and every difference is classed twice, from
//! the side of a client:
//!
//! - **on the wire**: does a client generated from the *old* spec keep working
//!   against a server that implements the *new* one?
//! - **in Rust**: does code written against the old `uncensored-api` crate
//!   still compile and behave the same against the regenerated crate?
//!
//! A change is *breaking* when either answer is no; the crate's version bump
//! follows from the worst change (see [`Version::required`]).
//!
//! The rules, and why:
//!
//! - **Operations** (matched by `operationId`, then by method and path):
//!   added = compatible (a new method); removed = breaking; a new method or
//!   path for the same id = breaking on the wire (the old client calls the old
//!   path); a renamed `operationId` = breaking in Rust (the method is renamed).
//! - **Request fields**: a new optional field = compatible on the wire but
//!   breaking in Rust: progenitor's structs have only public fields and are not
//!   `#[non_exhaustive]`, so a struct literal no longer compiles (Cargo's
//!   semver rules call that major, and `cargo xtask release-check` reports it
//!   as cargo-semver-checks' `constructible_struct_adds_field`). A new required
//!   field = breaking (the old client does not send it). A removed field =
//!   breaking: the old client still sends it, and the server refuses it
//!   (`additionalProperties: false`) or silently drops a setting the caller
//!   asked for. Optional made required = breaking; required made optional =
//!   compatible on the wire, breaking in Rust (`T` becomes `Option<T>`).
//! - **Response fields**: a new field = compatible on the wire, because typify
//!   emits `#[serde(deny_unknown_fields)]` only for `additionalProperties:
//!   false` (then it is breaking), but breaking in Rust (a new public field).
//!   A removed field = breaking in Rust; on the wire too when it was required
//!   (the old client fails to parse the body). Made optional = breaking (the old
//!   client requires it); made required = compatible on the wire, breaking in
//!   Rust. Made nullable = breaking on the wire for responses (the old client
//!   cannot parse `null`), compatible for requests.
//! - **Constraints** (`maxLength`, `minLength`, `pattern`, `minimum`,
//!   `maximum`, `exclusive*`, `multipleOf`, `minItems`, `maxItems`, an open
//!   string becoming an `enum`): in a request, tightened = breaking (a value
//!   the old client sends is refused), loosened = compatible. In a response the
//!   other way round: loosened = breaking (the old client's validating newtype
//!   refuses a value it now receives; code relying on the documented range is
//!   wrong), tightened = compatible on the wire. In Rust, a string's
//!   constraints live in a validating newtype: tightening refuses values the
//!   old crate accepted (breaking), and gaining the first or losing the last
//!   constraint swaps the field's type between `String` and a newtype
//!   (breaking). Numbers are plain Rust integers and floats, so their
//!   constraints change no Rust code.
//! - **Enum values**: typify's enums are exhaustive (no catch-all variant), so
//!   any added or removed value is breaking in Rust. On the wire, a value added
//!   to a response enum is breaking (the old client fails to parse it), added
//!   to a request enum compatible; a value removed from a request enum is
//!   breaking (the old client may send it), from a response enum compatible.
//! - **Statuses**: a new error status (4xx, 5xx, `default`) = compatible: the
//!   old client reports it as an unexpected-response error, the regenerated one
//!   as the same error type (progenitor needs one error schema per operation).
//!   A new success status = breaking on the wire (the old client calls a
//!   success an error). A removed status = compatible, unless no success
//!   status is left (the return type changes).
//! - **Parameters** (by location and name, path-level ones included): a new
//!   optional one = compatible; a new required one = breaking; a removed one =
//!   breaking (its builder method goes); optional made required = breaking;
//!   required made optional = compatible. Their schemas follow the request
//!   rules. A request body follows the same rules as a parameter.
//! - **Security**: the old client holds credentials for one of the old
//!   alternatives, so an alternative that is gone (or security where there was
//!   none, or a changed scheme) = breaking on the wire; an added alternative or
//!   dropped security = compatible. progenitor generates no code for security.
//! - **Defaults**: added, removed or changed = compatible on the wire (the old
//!   client sends its value explicitly) but breaking in Rust (the field's type
//!   moves between `T` and `Option<T>`, or the builder fills in another value).
//! - A changed `type` or `format` (`int32` to `int64`, a `date-time` string to a
//!   plain one) = breaking. A change inside `allOf`/`oneOf`/`anyOf`/`not` or an
//!   untyped schema is not classified finer and counts as breaking.
//!
//! Not compared: descriptions, examples, tags, servers, response headers
//! (progenitor exposes them as an untyped map), callbacks.

use std::collections::HashSet;
use std::fmt;

use openapiv3::{OpenAPI, ReferenceOr};

#[path = "api_diff_ops.rs"]
mod ops;
#[path = "api_diff_schema.rs"]
mod schema;
pub use schema::Dir;

/// Whether a change keeps a client working.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Impact {
    /// Keeps a client working.
    Compatible,
    /// Breaks a client.
    Breaking,
}

impl fmt::Display for Impact {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Impact::Compatible => "compatible",
            Impact::Breaking => "breaking",
        })
    }
}

/// One difference between two specs.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Change {
    /// Where: an operation, a parameter, or a schema and field.
    pub place: String,
    /// What changed, in a few words.
    pub what: String,
    /// For a client generated from the old spec, talking to the new server.
    pub wire: Impact,
    /// For Rust code written against the old crate, built with the new one.
    pub rust: Impact,
}

impl Change {
    /// The worse of the two impacts.
    pub fn impact(&self) -> Impact {
        self.wire.max(self.rust)
    }
}

/// Every difference between two specs, in the order found.
#[derive(Debug, Default)]
pub struct Report {
    /// The changes, without duplicates.
    pub changes: Vec<Change>,
}

impl Report {
    /// The worst impact, or `None` when nothing changed.
    pub fn worst(&self) -> Option<Impact> {
        self.changes.iter().map(Change::impact).max()
    }

    /// The changes of one impact.
    pub fn of(&self, impact: Impact) -> impl Iterator<Item = &Change> {
        self.changes.iter().filter(move |c| c.impact() == impact)
    }

    /// The report as printed: breaking changes first, one per line.
    pub fn render(&self) -> String {
        if self.changes.is_empty() {
            return "no API changes\n".into();
        }
        let mut out = format!(
            "{} breaking, {} compatible API change(s):\n",
            self.of(Impact::Breaking).count(),
            self.of(Impact::Compatible).count()
        );
        for impact in [Impact::Breaking, Impact::Compatible] {
            for c in self.of(impact) {
                out.push_str(&format!(
                    "  {:<10}  {}: {} (wire: {}, Rust: {})\n",
                    impact.to_string(),
                    c.place,
                    c.what,
                    c.wire,
                    c.rust
                ));
            }
        }
        out
    }
}

/// A crate version, `MAJOR.MINOR.PATCH` (no pre-release).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version {
    /// MAJOR.
    pub major: u64,
    /// MINOR.
    pub minor: u64,
    /// PATCH.
    pub patch: u64,
}

impl Version {
    /// Parses `1.2.3`.
    pub fn parse(text: &str) -> anyhow::Result<Version> {
        let parts: Vec<&str> = text.trim().split('.').collect();
        let number = |s: &str| s.parse::<u64>().ok();
        match parts.as_slice() {
            [a, b, c] => match (number(a), number(b), number(c)) {
                (Some(major), Some(minor), Some(patch)) => Ok(Version {
                    major,
                    minor,
                    patch,
                }),
                _ => anyhow::bail!("version {text:?} is not MAJOR.MINOR.PATCH"),
            },
            _ => anyhow::bail!("version {text:?} is not MAJOR.MINOR.PATCH"),
        }
    }

    /// The smallest version after `self` that Cargo's semver rules allow for
    /// changes of this worst impact: breaking bumps the left-most non-zero
    /// part (0.1.x → 0.2.0, 1.x → 2.0.0), compatible the next one (0.1.0 →
    /// 0.1.1, 1.2.0 → 1.3.0), nothing needs no bump.
    pub fn required(self, worst: Option<Impact>) -> Version {
        let Version {
            major,
            minor,
            patch,
        } = self;
        match (worst, major) {
            (None, _) => self,
            (Some(Impact::Breaking), 0) => Version::new(0, minor + 1, 0),
            (Some(Impact::Breaking), _) => Version::new(major + 1, 0, 0),
            (Some(Impact::Compatible), 0) => Version::new(0, minor, patch + 1),
            (Some(Impact::Compatible), _) => Version::new(major, minor + 1, 0),
        }
    }

    fn new(major: u64, minor: u64, patch: u64) -> Version {
        Version {
            major,
            minor,
            patch,
        }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// Compares two specs: every change from `old` to `new`.
pub fn compare(old: &OpenAPI, new: &OpenAPI) -> Report {
    let mut walker = Walker {
        old,
        new,
        changes: Vec::new(),
        seen_changes: HashSet::new(),
        seen_schemas: HashSet::new(),
    };
    walker.operations();
    walker.security_schemes();
    Report {
        changes: walker.changes,
    }
}

/// The state of one comparison: both specs and the changes found so far.
pub(crate) struct Walker<'a> {
    pub(crate) old: &'a OpenAPI,
    pub(crate) new: &'a OpenAPI,
    changes: Vec<Change>,
    seen_changes: HashSet<Change>,
    /// (old schema, new schema, direction) pairs already walked.
    pub(crate) seen_schemas: HashSet<(String, String, Dir)>,
}

impl<'a> Walker<'a> {
    pub(crate) fn push(&mut self, place: &str, what: String, wire: Impact, rust: Impact) {
        let change = Change {
            place: place.to_string(),
            what,
            wire,
            rust,
        };
        if self.seen_changes.insert(change.clone()) {
            self.changes.push(change);
        }
    }
}

pub(crate) const MAX_REF_DEPTH: usize = 16;

/// Follows `$ref`s to `#/components/<kind>/<name>` until an item.
pub(crate) fn resolve<'s, T>(
    reference: &'s ReferenceOr<T>,
    lookup: impl Fn(&str) -> Option<&'s ReferenceOr<T>>,
) -> Option<&'s T> {
    let mut current = reference;
    for _ in 0..MAX_REF_DEPTH {
        match current {
            ReferenceOr::Item(item) => return Some(item),
            ReferenceOr::Reference { reference } => {
                current = lookup(reference.rsplit('/').next().unwrap_or_default())?;
            }
        }
    }
    None
}

#[cfg(test)]
#[path = "api_diff_tests.rs"]
mod tests;
