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
//!   semver rules, and cargo-semver-checks, call that major). A new required
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
//! - A changed `type` or `format` (`int32` to `int64`, a `date-time` string to a
//!   plain one) = breaking. A change inside `allOf`/`oneOf`/`anyOf`/`not` or an
//!   untyped schema is not classified finer and counts as breaking.
//!
//! Not compared: descriptions, examples, tags, servers, response headers
//! (progenitor exposes them as an untyped map), callbacks.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt;

use openapiv3::{
    OpenAPI, Operation, Parameter, ParameterSchemaOrContent, ReferenceOr, RequestBody, Response,
    Schema, StatusCode,
};

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

/// An operation with the path-level parameters it inherits.
struct Op<'a> {
    id: String,
    method: String,
    path: String,
    operation: &'a Operation,
    path_parameters: &'a [ReferenceOr<Parameter>],
}

impl Op<'_> {
    fn route(&self) -> String {
        format!("{} {}", self.method.to_uppercase(), self.path)
    }
}

fn operations(spec: &OpenAPI) -> Vec<Op<'_>> {
    let mut out = Vec::new();
    for (path, item) in spec.paths.iter() {
        let ReferenceOr::Item(item) = item else {
            continue;
        };
        for (method, operation) in item.iter() {
            out.push(Op {
                id: operation
                    .operation_id
                    .clone()
                    .unwrap_or_else(|| format!("{} {path}", method.to_uppercase())),
                method: method.to_string(),
                path: path.clone(),
                operation,
                path_parameters: &item.parameters,
            });
        }
    }
    out
}

pub(crate) struct Walker<'a> {
    old: &'a OpenAPI,
    new: &'a OpenAPI,
    changes: Vec<Change>,
    seen_changes: HashSet<Change>,
    /// (old schema, new schema, direction) pairs already walked.
    seen_schemas: HashSet<(String, String, Dir)>,
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

    fn operations(&mut self) {
        use Impact::{Breaking, Compatible};
        let old_ops = operations(self.old);
        let new_ops = operations(self.new);
        let mut matched_new = BTreeSet::new();
        for old in &old_ops {
            let by_id = new_ops.iter().position(|n| n.id == old.id);
            let by_route = || {
                new_ops
                    .iter()
                    .position(|n| n.method == old.method && n.path == old.path)
                    .filter(|i| !old_ops.iter().any(|o| o.id == new_ops[*i].id))
            };
            let place = format!("operation {}", old.id);
            match by_id.or_else(by_route) {
                None => self.push(
                    &place,
                    format!("removed ({})", old.route()),
                    Breaking,
                    Breaking,
                ),
                Some(i) => {
                    matched_new.insert(i);
                    let new = &new_ops[i];
                    if new.id != old.id {
                        self.push(
                            &place,
                            format!("operationId renamed to {} (the method is renamed)", new.id),
                            Compatible,
                            Breaking,
                        );
                    }
                    if new.route() != old.route() {
                        self.push(
                            &place,
                            format!("moved from {} to {}", old.route(), new.route()),
                            Breaking,
                            Compatible,
                        );
                    }
                    self.operation(old, new);
                }
            }
        }
        for (i, new) in new_ops.iter().enumerate() {
            if !matched_new.contains(&i) {
                self.push(
                    &format!("operation {}", new.id),
                    format!("added ({})", new.route()),
                    Compatible,
                    Compatible,
                );
            }
        }
    }

    fn operation(&mut self, old: &Op<'a>, new: &Op<'a>) {
        let place = format!("operation {}", old.id);
        self.parameters(&place, old, new);
        self.request_body(&place, old.operation, new.operation);
        self.responses(&place, old.operation, new.operation);
        self.security(&place, old.operation, new.operation);
    }

    fn parameters(&mut self, place: &str, old: &Op<'a>, new: &Op<'a>) {
        use Impact::{Breaking, Compatible};
        let old_params = parameters(self.old, old);
        let new_params = parameters(self.new, new);
        for (key, old_p) in &old_params {
            let here = format!("{place} parameter {} {}", key.0, key.1);
            match new_params.get(key) {
                None => self.push(&here, "removed".into(), Breaking, Breaking),
                Some(new_p) => {
                    let (old_data, new_data) =
                        (old_p.parameter_data_ref(), new_p.parameter_data_ref());
                    match (old_data.required, new_data.required) {
                        (false, true) => {
                            self.push(&here, "made required".into(), Breaking, Breaking)
                        }
                        (true, false) => {
                            self.push(&here, "made optional".into(), Compatible, Compatible)
                        }
                        _ => {}
                    }
                    if let (
                        ParameterSchemaOrContent::Schema(o),
                        ParameterSchemaOrContent::Schema(n),
                    ) = (&old_data.format, &new_data.format)
                    {
                        self.schema(&here, Dir::Request, o, n);
                    }
                }
            }
        }
        for (key, new_p) in &new_params {
            if !old_params.contains_key(key) {
                let here = format!("{place} parameter {} {}", key.0, key.1);
                if new_p.parameter_data_ref().required {
                    self.push(&here, "added, required".into(), Breaking, Breaking);
                } else {
                    self.push(&here, "added, optional".into(), Compatible, Compatible);
                }
            }
        }
    }

    fn request_body(&mut self, place: &str, old: &'a Operation, new: &'a Operation) {
        use Impact::{Breaking, Compatible};
        let here = format!("{place} request body");
        let old_body = old
            .request_body
            .as_ref()
            .and_then(|b| request_body(self.old, b));
        let new_body = new
            .request_body
            .as_ref()
            .and_then(|b| request_body(self.new, b));
        match (old_body, new_body) {
            (None, None) => {}
            (Some(_), None) => self.push(&here, "removed".into(), Breaking, Breaking),
            (None, Some(n)) => {
                let wire = if n.required { Breaking } else { Compatible };
                self.push(&here, "added".into(), wire, wire);
            }
            (Some(o), Some(n)) => {
                match (o.required, n.required) {
                    (false, true) => self.push(&here, "made required".into(), Breaking, Breaking),
                    (true, false) => {
                        self.push(&here, "made optional".into(), Compatible, Compatible)
                    }
                    _ => {}
                }
                match (json_schema(&o.content), json_schema(&n.content)) {
                    (Some(os), Some(ns)) => self.schema(&here, Dir::Request, os, ns),
                    (None, None) => {}
                    _ => self.push(
                        &here,
                        "JSON body schema added or removed".into(),
                        Breaking,
                        Breaking,
                    ),
                }
            }
        }
    }

    fn responses(&mut self, place: &str, old: &'a Operation, new: &'a Operation) {
        use Impact::{Breaking, Compatible};
        let old_statuses = statuses(old);
        let new_statuses = statuses(new);
        let successes_left = new_statuses.keys().any(|s| s.starts_with('2'));
        for status in old_statuses.keys() {
            if !new_statuses.contains_key(status) {
                let rust = if status.starts_with('2') && !successes_left {
                    Breaking
                } else {
                    Compatible
                };
                self.push(
                    &format!("{place} response {status}"),
                    "removed".into(),
                    Compatible,
                    rust,
                );
            }
        }
        for status in new_statuses.keys() {
            if !old_statuses.contains_key(status) {
                let (wire, why) = if status.starts_with('2') {
                    (Breaking, "added (the old client calls it an error)")
                } else {
                    (Compatible, "added")
                };
                self.push(
                    &format!("{place} response {status}"),
                    why.into(),
                    wire,
                    Compatible,
                );
            }
        }
        for (group, is_group) in [
            (
                "success",
                (|s: &str| s.starts_with('2')) as fn(&str) -> bool,
            ),
            ("error", |s: &str| {
                s.starts_with('4') || s.starts_with('5') || s == "default"
            }),
        ] {
            let first_body =
                |spec: &'a OpenAPI, statuses: &BTreeMap<String, &'a ReferenceOr<Response>>| {
                    statuses
                        .iter()
                        .filter(|(s, _)| is_group(s))
                        .find_map(|(_, r)| response(spec, r).and_then(|r| json_schema(&r.content)))
                };
            let here = format!("{place} {group} body");
            match (
                first_body(self.old, &old_statuses),
                first_body(self.new, &new_statuses),
            ) {
                (Some(o), Some(n)) => self.schema(&here, Dir::Response, o, n),
                (None, None) => {}
                (Some(_), None) => self.push(&here, "removed".into(), Breaking, Breaking),
                (None, Some(_)) => self.push(&here, "added".into(), Compatible, Breaking),
            }
        }
    }

    fn security(&mut self, place: &str, old: &Operation, new: &Operation) {
        let effective =
            |spec: &OpenAPI, op: &Operation| -> BTreeSet<BTreeMap<String, BTreeSet<String>>> {
                op.security
                    .as_ref()
                    .or(spec.security.as_ref())
                    .map(|alternatives| {
                        alternatives
                            .iter()
                            .map(|req| {
                                req.iter()
                                    .map(|(k, v)| (k.clone(), v.iter().cloned().collect()))
                                    .collect()
                            })
                            .collect()
                    })
                    .unwrap_or_default()
            };
        let old_sec = effective(self.old, old);
        let new_sec = effective(self.new, new);
        if old_sec == new_sec {
            return;
        }
        let anonymous = |s: &BTreeSet<BTreeMap<String, BTreeSet<String>>>| {
            s.is_empty() || s.iter().any(|alt| alt.is_empty())
        };
        let here = format!("{place} security");
        let wire = if anonymous(&new_sec) || (!anonymous(&old_sec) && old_sec.is_subset(&new_sec)) {
            Impact::Compatible
        } else {
            Impact::Breaking
        };
        self.push(
            &here,
            format!(
                "requirements changed from {} to {}",
                show(&old_sec),
                show(&new_sec)
            ),
            wire,
            Impact::Compatible,
        );
    }

    fn security_schemes(&mut self) {
        let schemes = |spec: &OpenAPI| -> BTreeMap<String, serde_json::Value> {
            spec.components
                .iter()
                .flat_map(|c| c.security_schemes.iter())
                .map(|(k, v)| (k.clone(), serde_json::to_value(v).unwrap_or_default()))
                .collect()
        };
        let (old, new) = (schemes(self.old), schemes(self.new));
        for (name, scheme) in &old {
            let here = format!("security scheme {name}");
            match new.get(name) {
                None => self.push(
                    &here,
                    "removed".into(),
                    Impact::Breaking,
                    Impact::Compatible,
                ),
                Some(n) if strip_description(n) != strip_description(scheme) => self.push(
                    &here,
                    "changed (type, location or name)".into(),
                    Impact::Breaking,
                    Impact::Compatible,
                ),
                Some(_) => {}
            }
        }
        for name in new.keys().filter(|n| !old.contains_key(*n)) {
            self.push(
                &format!("security scheme {name}"),
                "added".into(),
                Impact::Compatible,
                Impact::Compatible,
            );
        }
    }
}

fn strip_description(value: &serde_json::Value) -> serde_json::Value {
    let mut value = value.clone();
    if let Some(map) = value.as_object_mut() {
        map.remove("description");
    }
    value
}

fn show(security: &BTreeSet<BTreeMap<String, BTreeSet<String>>>) -> String {
    if security.is_empty() {
        return "none".into();
    }
    let alternatives: Vec<String> = security
        .iter()
        .map(|alt| alt.keys().cloned().collect::<Vec<_>>().join(" + "))
        .collect();
    alternatives.join(" or ")
}

const MAX_REF_DEPTH: usize = 16;

/// Follows `$ref`s to `#/components/<kind>/<name>` until an item.
fn resolve<'s, T>(
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

fn parameters<'s>(spec: &'s OpenAPI, op: &Op<'s>) -> BTreeMap<(String, String), &'s Parameter> {
    let mut out = BTreeMap::new();
    for p in op.path_parameters.iter().chain(&op.operation.parameters) {
        let Some(p) = resolve(p, |name| {
            spec.components
                .as_ref()
                .and_then(|c| c.parameters.get(name))
        }) else {
            continue;
        };
        let location = match p {
            Parameter::Query { .. } => "query",
            Parameter::Header { .. } => "header",
            Parameter::Path { .. } => "path",
            Parameter::Cookie { .. } => "cookie",
        };
        let name = p.parameter_data_ref().name.clone();
        // Header names are case-insensitive.
        let name = if location == "header" {
            name.to_ascii_lowercase()
        } else {
            name
        };
        out.insert((location.to_string(), name), p);
    }
    out
}

fn request_body<'s>(
    spec: &'s OpenAPI,
    body: &'s ReferenceOr<RequestBody>,
) -> Option<&'s RequestBody> {
    resolve(body, |name| {
        spec.components
            .as_ref()
            .and_then(|c| c.request_bodies.get(name))
    })
}

fn response<'s>(spec: &'s OpenAPI, r: &'s ReferenceOr<Response>) -> Option<&'s Response> {
    resolve(r, |name| {
        spec.components.as_ref().and_then(|c| c.responses.get(name))
    })
}

fn statuses(op: &Operation) -> BTreeMap<String, &ReferenceOr<Response>> {
    let mut out: BTreeMap<String, &ReferenceOr<Response>> = op
        .responses
        .responses
        .iter()
        .map(|(status, r)| {
            let label = match status {
                StatusCode::Code(code) => code.to_string(),
                StatusCode::Range(range) => format!("{range}XX"),
            };
            (label, r)
        })
        .collect();
    if let Some(default) = &op.responses.default {
        out.insert("default".into(), default);
    }
    out
}

fn json_schema(content: &openapiv3::Content) -> Option<&ReferenceOr<Schema>> {
    content
        .get("application/json")
        .and_then(|media| media.schema.as_ref())
}

#[cfg(test)]
#[path = "api_diff_tests.rs"]
mod tests;
