//! The schema half of [`super`]: two schemas compared keyword by keyword,
//! `$ref`s followed, each component walked once per direction.

use std::borrow::Borrow;
use std::collections::BTreeSet;
use std::fmt;

use openapiv3::{
    AdditionalProperties, ArrayType, IntegerType, NumberType, ObjectType, OpenAPI, ReferenceOr,
    Schema, SchemaKind, StringType, Type,
};

use super::Impact::{self, Breaking, Compatible};
use super::{MAX_REF_DEPTH, Walker, resolve};

/// Which way a value travels: the constraint rules are mirror images.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dir {
    /// Sent by the client (a request body or a parameter).
    Request,
    /// Received by the client (a response body).
    Response,
}

impl fmt::Display for Dir {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Dir::Request => "request",
            Dir::Response => "response",
        })
    }
}

/// How a constraint moved: the set of accepted values shrank, grew, or
/// changed in a way that cannot be ordered (two regular expressions).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Narrowing {
    Tightened,
    Loosened,
    Unordered,
}

/// A named component (`Some(name)`) or an inline schema, and what it resolves to.
fn resolve_schema<'s, S: Borrow<Schema>>(
    spec: &'s OpenAPI,
    r: &'s ReferenceOr<S>,
) -> (Option<String>, Option<&'s Schema>) {
    match r {
        ReferenceOr::Item(schema) => (None, Some(schema.borrow())),
        ReferenceOr::Reference { reference } => {
            let name = reference.rsplit('/').next().unwrap_or_default().to_string();
            let schema = spec
                .components
                .as_ref()
                .and_then(|c| c.schemas.get(&name))
                .and_then(|target| {
                    resolve(target, |n| {
                        spec.components.as_ref().and_then(|c| c.schemas.get(n))
                    })
                });
            (Some(name), schema)
        }
    }
}

fn kind_name(kind: &SchemaKind) -> &'static str {
    match kind {
        SchemaKind::Type(Type::String(_)) => "string",
        SchemaKind::Type(Type::Number(_)) => "number",
        SchemaKind::Type(Type::Integer(_)) => "integer",
        SchemaKind::Type(Type::Object(_)) => "object",
        SchemaKind::Type(Type::Array(_)) => "array",
        SchemaKind::Type(Type::Boolean(_)) => "boolean",
        SchemaKind::OneOf { .. } => "oneOf",
        SchemaKind::AllOf { .. } => "allOf",
        SchemaKind::AnyOf { .. } => "anyOf",
        SchemaKind::Not { .. } => "not",
        SchemaKind::Any(_) => "untyped schema",
    }
}

/// A number or integer schema's keywords, as floats.
struct Numeric {
    format: String,
    multiple_of: Option<f64>,
    exclusive_minimum: bool,
    exclusive_maximum: bool,
    minimum: Option<f64>,
    maximum: Option<f64>,
    enumeration: BTreeSet<String>,
}

impl From<&IntegerType> for Numeric {
    fn from(t: &IntegerType) -> Self {
        Numeric {
            format: json(&t.format),
            multiple_of: t.multiple_of.map(|v| v as f64),
            exclusive_minimum: t.exclusive_minimum,
            exclusive_maximum: t.exclusive_maximum,
            minimum: t.minimum.map(|v| v as f64),
            maximum: t.maximum.map(|v| v as f64),
            enumeration: t
                .enumeration
                .iter()
                .map(|v| v.map_or("null".into(), |n| n.to_string()))
                .collect(),
        }
    }
}

impl From<&NumberType> for Numeric {
    fn from(t: &NumberType) -> Self {
        Numeric {
            format: json(&t.format),
            multiple_of: t.multiple_of,
            exclusive_minimum: t.exclusive_minimum,
            exclusive_maximum: t.exclusive_maximum,
            minimum: t.minimum,
            maximum: t.maximum,
            enumeration: t
                .enumeration
                .iter()
                .map(|v| v.map_or("null".into(), |n| n.to_string()))
                .collect(),
        }
    }
}

fn json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

/// How an upper bound moved (`maxLength`, `maximum`, `maxItems`).
fn upper<T: PartialOrd + fmt::Display>(
    keyword: &str,
    old: Option<T>,
    new: Option<T>,
) -> Option<(Narrowing, String)> {
    match (old, new) {
        (Some(o), Some(n)) if n < o => Some((
            Narrowing::Tightened,
            format!("{keyword} lowered from {o} to {n}"),
        )),
        (Some(o), Some(n)) if n > o => Some((
            Narrowing::Loosened,
            format!("{keyword} raised from {o} to {n}"),
        )),
        (Some(o), None) => Some((Narrowing::Loosened, format!("{keyword} {o} removed"))),
        (None, Some(n)) => Some((Narrowing::Tightened, format!("{keyword} {n} added"))),
        _ => None,
    }
}

/// How a lower bound moved (`minLength`, `minimum`, `minItems`).
fn lower<T: PartialOrd + fmt::Display>(
    keyword: &str,
    old: Option<T>,
    new: Option<T>,
) -> Option<(Narrowing, String)> {
    match (old, new) {
        (Some(o), Some(n)) if n > o => Some((
            Narrowing::Tightened,
            format!("{keyword} raised from {o} to {n}"),
        )),
        (Some(o), Some(n)) if n < o => Some((
            Narrowing::Loosened,
            format!("{keyword} lowered from {o} to {n}"),
        )),
        (Some(o), None) => Some((Narrowing::Loosened, format!("{keyword} {o} removed"))),
        (None, Some(n)) => Some((Narrowing::Tightened, format!("{keyword} {n} added"))),
        _ => None,
    }
}

impl<'a> Walker<'a> {
    fn push_dir(&mut self, place: &str, dir: Dir, what: String, wire: Impact, rust: Impact) {
        self.push(&format!("{place} ({dir})"), what, wire, rust);
    }

    /// A constraint moved: `rust` says what it does to the generated Rust.
    fn constraint(
        &mut self,
        place: &str,
        dir: Dir,
        (narrowing, what): (Narrowing, String),
        rust: Impact,
    ) {
        let wire = match (dir, narrowing) {
            (_, Narrowing::Unordered)
            | (Dir::Request, Narrowing::Tightened)
            | (Dir::Response, Narrowing::Loosened) => Breaking,
            _ => Compatible,
        };
        self.push_dir(place, dir, what, wire, rust);
    }

    /// Compares two schemas found at `place`.
    pub(crate) fn schema<O: Borrow<Schema>, N: Borrow<Schema>>(
        &mut self,
        place: &str,
        dir: Dir,
        old: &'a ReferenceOr<O>,
        new: &'a ReferenceOr<N>,
    ) {
        self.schema_at(place, dir, old, new, 0);
    }

    fn schema_at<O: Borrow<Schema>, N: Borrow<Schema>>(
        &mut self,
        place: &str,
        dir: Dir,
        old: &'a ReferenceOr<O>,
        new: &'a ReferenceOr<N>,
        depth: usize,
    ) {
        if depth > MAX_REF_DEPTH * 4 {
            return;
        }
        let (old_name, old_schema) = resolve_schema(self.old, old);
        let (new_name, new_schema) = resolve_schema(self.new, new);
        let (Some(o), Some(n)) = (old_schema, new_schema) else {
            if new_schema.is_none() {
                self.push_dir(
                    place,
                    dir,
                    "a $ref that does not resolve".into(),
                    Breaking,
                    Breaking,
                );
            }
            return;
        };
        let mut here = place.to_string();
        match (&old_name, &new_name) {
            (Some(a), Some(b)) => {
                if a != b {
                    self.push_dir(
                        place,
                        dir,
                        format!("type {a} replaced by {b} (the Rust type is renamed)"),
                        Compatible,
                        Breaking,
                    );
                }
                if !self.seen_schemas.insert((a.clone(), b.clone(), dir)) {
                    return;
                }
                here = b.clone();
            }
            (None, Some(b)) => self.push_dir(
                place,
                dir,
                format!("inline schema replaced by {b} (the Rust type is renamed)"),
                Compatible,
                Breaking,
            ),
            (Some(a), None) => self.push_dir(
                place,
                dir,
                format!("{a} replaced by an inline schema (the Rust type is renamed)"),
                Compatible,
                Breaking,
            ),
            (None, None) => {}
        }
        self.schema_body(&here, dir, o, n, depth);
    }

    fn schema_body(&mut self, place: &str, dir: Dir, o: &'a Schema, n: &'a Schema, depth: usize) {
        // typify gives a field with a default a plain `T` filled in by serde
        // and the builder, one without an `Option<T>`.
        match (&o.schema_data.default, &n.schema_data.default) {
            (Some(a), Some(b)) if a != b => self.push_dir(
                place,
                dir,
                format!("default changed from {a} to {b} (the builder fills in another value)"),
                Compatible,
                Breaking,
            ),
            (Some(a), None) => self.push_dir(
                place,
                dir,
                format!("default {a} removed"),
                Compatible,
                Breaking,
            ),
            (None, Some(b)) => self.push_dir(
                place,
                dir,
                format!("default {b} added"),
                Compatible,
                Breaking,
            ),
            _ => {}
        }
        match (o.schema_data.nullable, n.schema_data.nullable, dir) {
            (false, true, Dir::Request) => self.push_dir(
                place,
                dir,
                "made nullable (`T` becomes `Option<T>`)".into(),
                Compatible,
                Breaking,
            ),
            (false, true, Dir::Response) => self.push_dir(
                place,
                dir,
                "made nullable (the old client cannot parse null)".into(),
                Breaking,
                Breaking,
            ),
            (true, false, Dir::Request) => self.push_dir(
                place,
                dir,
                "no longer nullable (the old client may send null)".into(),
                Breaking,
                Breaking,
            ),
            (true, false, Dir::Response) => self.push_dir(
                place,
                dir,
                "no longer nullable (`Option<T>` becomes `T`)".into(),
                Compatible,
                Breaking,
            ),
            _ => {}
        }
        use SchemaKind::Type as T;
        match (&o.schema_kind, &n.schema_kind) {
            (T(Type::String(a)), T(Type::String(b))) => self.strings(place, dir, a, b),
            (T(Type::Integer(a)), T(Type::Integer(b))) => {
                self.numbers(place, dir, a.into(), b.into())
            }
            (T(Type::Number(a)), T(Type::Number(b))) => {
                self.numbers(place, dir, a.into(), b.into())
            }
            (T(Type::Object(a)), T(Type::Object(b))) => self.objects(place, dir, a, b, depth),
            (T(Type::Array(a)), T(Type::Array(b))) => self.arrays(place, dir, a, b, depth),
            (T(Type::Boolean(_)), T(Type::Boolean(_))) => {}
            (a, b) if kind_name(a) == kind_name(b) => {
                if json(a) != json(b) {
                    self.push_dir(
                        place,
                        dir,
                        format!("changed inside {} (not classified finer)", kind_name(a)),
                        Breaking,
                        Breaking,
                    );
                }
            }
            (a, b) => self.push_dir(
                place,
                dir,
                format!("type changed from {} to {}", kind_name(a), kind_name(b)),
                Breaking,
                Breaking,
            ),
        }
    }

    fn enumeration(
        &mut self,
        place: &str,
        dir: Dir,
        old: &BTreeSet<String>,
        new: &BTreeSet<String>,
    ) {
        if old == new {
            return;
        }
        let list = |s: &BTreeSet<String>| s.iter().cloned().collect::<Vec<_>>().join(", ");
        match (old.is_empty(), new.is_empty()) {
            (true, false) => self.constraint(
                place,
                dir,
                (
                    Narrowing::Tightened,
                    format!("became an enum of {}", list(new)),
                ),
                Breaking,
            ),
            (false, true) => self.constraint(
                place,
                dir,
                (
                    Narrowing::Loosened,
                    format!("enum of {} became open", list(old)),
                ),
                Breaking,
            ),
            _ => {
                let added: BTreeSet<String> = new.difference(old).cloned().collect();
                let removed: BTreeSet<String> = old.difference(new).cloned().collect();
                if !added.is_empty() {
                    let wire = if dir == Dir::Response {
                        Breaking
                    } else {
                        Compatible
                    };
                    self.push_dir(
                        place,
                        dir,
                        format!(
                            "enum value(s) {} added (the Rust enum is exhaustive)",
                            list(&added)
                        ),
                        wire,
                        Breaking,
                    );
                }
                if !removed.is_empty() {
                    let wire = if dir == Dir::Request {
                        Breaking
                    } else {
                        Compatible
                    };
                    self.push_dir(
                        place,
                        dir,
                        format!("enum value(s) {} removed", list(&removed)),
                        wire,
                        Breaking,
                    );
                }
            }
        }
    }

    fn strings(&mut self, place: &str, dir: Dir, a: &StringType, b: &StringType) {
        if json(&a.format) != json(&b.format) {
            self.push_dir(
                place,
                dir,
                format!(
                    "format changed from {} to {}",
                    json(&a.format),
                    json(&b.format)
                ),
                Breaking,
                Breaking,
            );
        }
        let values = |t: &StringType| -> BTreeSet<String> {
            t.enumeration
                .iter()
                .map(|v| v.as_ref().map_or("null".into(), |s| format!("{s:?}")))
                .collect()
        };
        self.enumeration(place, dir, &values(a), &values(b));
        let newtype = |t: &StringType| {
            t.min_length.is_some() || t.max_length.is_some() || t.pattern.is_some()
        };
        let type_changes = newtype(a) != newtype(b);
        if type_changes {
            self.push_dir(
                place,
                dir,
                "the Rust type changes between String and a validating newtype".into(),
                Compatible,
                Breaking,
            );
        }
        let mut moves = Vec::new();
        moves.extend(upper("maxLength", a.max_length, b.max_length));
        moves.extend(lower("minLength", a.min_length, b.min_length));
        match (&a.pattern, &b.pattern) {
            (Some(o), Some(n)) if o != n => moves.push((
                Narrowing::Unordered,
                format!("pattern changed from {o} to {n}"),
            )),
            (Some(o), None) => moves.push((Narrowing::Loosened, format!("pattern {o} removed"))),
            (None, Some(n)) => moves.push((Narrowing::Tightened, format!("pattern {n} added"))),
            _ => {}
        }
        for (narrowing, what) in moves {
            // The newtype's TryFrom refuses what the old one accepted.
            let rust = if narrowing == Narrowing::Loosened {
                Compatible
            } else {
                Breaking
            };
            self.constraint(place, dir, (narrowing, what), rust);
        }
    }

    fn numbers(&mut self, place: &str, dir: Dir, a: Numeric, b: Numeric) {
        if a.format != b.format {
            self.push_dir(
                place,
                dir,
                format!("format changed from {} to {}", a.format, b.format),
                Breaking,
                Breaking,
            );
        }
        self.enumeration(place, dir, &a.enumeration, &b.enumeration);
        let mut moves = Vec::new();
        moves.extend(lower("minimum", a.minimum, b.minimum));
        moves.extend(upper("maximum", a.maximum, b.maximum));
        for (keyword, o, n) in [
            ("exclusiveMinimum", a.exclusive_minimum, b.exclusive_minimum),
            ("exclusiveMaximum", a.exclusive_maximum, b.exclusive_maximum),
        ] {
            match (o, n) {
                (false, true) => moves.push((Narrowing::Tightened, format!("{keyword} set"))),
                (true, false) => moves.push((Narrowing::Loosened, format!("{keyword} unset"))),
                _ => {}
            }
        }
        let whole = |x: f64| (x - x.round()).abs() < 1e-9;
        match (a.multiple_of, b.multiple_of) {
            (Some(o), Some(n)) if o != n => {
                let narrowing = if whole(n / o) {
                    Narrowing::Tightened
                } else if whole(o / n) {
                    Narrowing::Loosened
                } else {
                    Narrowing::Unordered
                };
                moves.push((narrowing, format!("multipleOf changed from {o} to {n}")));
            }
            (Some(o), None) => moves.push((Narrowing::Loosened, format!("multipleOf {o} removed"))),
            (None, Some(n)) => moves.push((Narrowing::Tightened, format!("multipleOf {n} added"))),
            _ => {}
        }
        // typify emits plain integers and floats: the bounds are not in the Rust types.
        for change in moves {
            self.constraint(place, dir, change, Compatible);
        }
    }

    fn objects(
        &mut self,
        place: &str,
        dir: Dir,
        a: &'a ObjectType,
        b: &'a ObjectType,
        depth: usize,
    ) {
        let denies = |t: &ObjectType| {
            matches!(
                t.additional_properties,
                Some(AdditionalProperties::Any(false))
            )
        };
        let required = |t: &ObjectType, name: &str| t.required.iter().any(|r| r == name);
        for (name, old_field) in &a.properties {
            let here = format!("{place}.{name}");
            let was_required = required(a, name);
            let Some(new_field) = b.properties.get(name) else {
                let wire = match dir {
                    Dir::Request => Breaking,
                    Dir::Response if was_required => Breaking,
                    Dir::Response => Compatible,
                };
                self.push_dir(&here, dir, "field removed".into(), wire, Breaking);
                continue;
            };
            match (was_required, required(b, name), dir) {
                (false, true, Dir::Request) => {
                    self.push_dir(&here, dir, "made required".into(), Breaking, Breaking)
                }
                (false, true, Dir::Response) => self.push_dir(
                    &here,
                    dir,
                    "made required (`Option<T>` becomes `T`)".into(),
                    Compatible,
                    Breaking,
                ),
                (true, false, Dir::Request) => self.push_dir(
                    &here,
                    dir,
                    "made optional (`T` becomes `Option<T>`)".into(),
                    Compatible,
                    Breaking,
                ),
                (true, false, Dir::Response) => self.push_dir(
                    &here,
                    dir,
                    "made optional (the old client requires it)".into(),
                    Breaking,
                    Breaking,
                ),
                _ => {}
            }
            self.schema_at(&here, dir, old_field, new_field, depth + 1);
        }
        for name in b
            .properties
            .keys()
            .filter(|n| !a.properties.contains_key(*n))
        {
            let here = format!("{place}.{name}");
            let (wire, what) = match (dir, required(b, name)) {
                (Dir::Request, true) => (Breaking, "required field added"),
                (Dir::Request, false) => (
                    Compatible,
                    "optional field added (a new public field: struct literals stop compiling)",
                ),
                (Dir::Response, _) if denies(a) => (
                    Breaking,
                    "field added (the old client denies unknown fields)",
                ),
                (Dir::Response, _) => (
                    Compatible,
                    "field added (a new public field: struct literals stop compiling)",
                ),
            };
            self.push_dir(&here, dir, what.into(), wire, Breaking);
        }
        match (&a.additional_properties, &b.additional_properties) {
            (Some(AdditionalProperties::Schema(o)), Some(AdditionalProperties::Schema(n))) => self
                .schema_at(
                    &format!("{place}.*"),
                    dir,
                    o.as_ref(),
                    n.as_ref(),
                    depth + 1,
                ),
            (o, n)
                if matches!(o, Some(AdditionalProperties::Schema(_)))
                    != matches!(n, Some(AdditionalProperties::Schema(_))) =>
            {
                self.push_dir(
                    place,
                    dir,
                    "additionalProperties changed between a schema and a flag".into(),
                    Breaking,
                    Breaking,
                )
            }
            _ => match (denies(a), denies(b)) {
                (true, false) => {
                    let wire = if dir == Dir::Response {
                        Breaking
                    } else {
                        Compatible
                    };
                    self.push_dir(
                        place,
                        dir,
                        "no longer refuses unknown fields".into(),
                        wire,
                        Compatible,
                    );
                }
                (false, true) => self.push_dir(
                    place,
                    dir,
                    "now refuses unknown fields".into(),
                    Compatible,
                    Compatible,
                ),
                _ => {}
            },
        }
    }

    fn arrays(&mut self, place: &str, dir: Dir, a: &'a ArrayType, b: &'a ArrayType, depth: usize) {
        let mut moves = Vec::new();
        moves.extend(upper("maxItems", a.max_items, b.max_items));
        moves.extend(lower("minItems", a.min_items, b.min_items));
        match (a.unique_items, b.unique_items) {
            (false, true) => moves.push((Narrowing::Tightened, "uniqueItems set".to_string())),
            (true, false) => moves.push((Narrowing::Loosened, "uniqueItems unset".to_string())),
            _ => {}
        }
        for change in moves {
            self.constraint(place, dir, change, Compatible);
        }
        match (&a.items, &b.items) {
            (Some(o), Some(n)) => self.schema_at(&format!("{place}[]"), dir, o, n, depth + 1),
            (None, None) => {}
            _ => self.push_dir(
                place,
                dir,
                "items schema added or removed".into(),
                Breaking,
                Breaking,
            ),
        }
    }
}
