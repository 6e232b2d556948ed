//! The operation half of [`super`]: operations matched by id and route, then
//! their parameters, bodies, statuses and security compared.

use std::collections::{BTreeMap, BTreeSet};

use openapiv3::{
    OpenAPI, Operation, Parameter, ParameterSchemaOrContent, ReferenceOr, RequestBody, Response,
    Schema, StatusCode,
};

use super::Impact;
use super::{Dir, Walker, resolve};

/// An operation with the path-level parameters it inherits.
pub(crate) struct Op<'a> {
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

impl<'a> Walker<'a> {
    pub(crate) fn operations(&mut self) {
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

    pub(crate) fn security_schemes(&mut self) {
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
