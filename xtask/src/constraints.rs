//! Carries the spec's validation keywords into the generated `JsonSchema` impls.
//!
//! typify derives `schemars::JsonSchema` on every type, but a derived schema
//! only knows Rust types: `prompt` becomes a bare string and `image_width` a
//! bare integer, losing `maxLength`, `minimum`, `multipleOf` and friends. This
//! pass finds each generated item that stands for a constrained schema in
//! openapi.yaml and points its schema at a marker type whose `JsonSchema` is
//! that schema fragment, copied from the spec:
//!
//! - a newtype generated for a constrained string (`GenerateImageRequestPrompt`)
//!   gets `#[schemars(with = "spec_schema::X")]` on its inner field;
//! - a struct field of a plain type with constraints (`image_width: i64`) gets
//!   the same attribute, wrapped in `Option<..>` when the field is optional so
//!   that required-ness is unchanged.
//!
//! Descriptions and defaults keep coming from the derive (doc comments and
//! serde defaults); the fragment holds only the type and its constraints.

use std::collections::BTreeMap;

use anyhow::{Result, bail};
use openapiv3::{OpenAPI, ReferenceOr};
use serde_json::{Map, Value};
use syn::{Fields, Item, Type, parse_quote};

/// The JSON Schema keywords that a derive cannot reproduce from a Rust type.
const CONSTRAINTS: &[&str] = &[
    "minLength",
    "maxLength",
    "pattern",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "multipleOf",
    "enum",
];

/// Formats that the Rust type already tells the derive (`f64` is `double`,
/// `chrono::DateTime` is `date-time`); any other format is a constraint.
const FORMATS_OF_RUST_TYPES: &[&str] = &["date-time", "double", "float", "int32", "int64"];

/// Adds the constraint attributes and the marker module to `file`.
pub fn apply(spec: &OpenAPI, file: &mut syn::File) -> Result<()> {
    let fragments = fragments(spec);
    let Some(types) = file.items.iter_mut().find_map(|item| match item {
        Item::Mod(module) if module.ident == "types" => module.content.as_mut(),
        _ => None,
    }) else {
        bail!("progenitor's output has no `types` module; the constraints pass needs updating")
    };
    let mut used = BTreeMap::new();
    for item in types.1.iter_mut() {
        let Item::Struct(item) = item else { continue };
        let name = item.ident.to_string();
        match &mut item.fields {
            Fields::Unnamed(fields) if fields.unnamed.len() == 1 => {
                if let Some(fragment) = fragments.get(&name) {
                    let field = &mut fields.unnamed[0];
                    let marker = format!("spec_schema::{name}");
                    field.attrs.push(parse_quote!(#[schemars(with = #marker)]));
                    used.insert(name.clone(), fragment.clone());
                }
            }
            Fields::Named(fields) => {
                for field in fields.named.iter_mut() {
                    let ident = field.ident.as_ref().expect("named field").to_string();
                    let property = ident.trim_start_matches("r#").trim_end_matches('_');
                    let key = format!("{name}{}", pascal(property));
                    // A constrained property that typify turned into a newtype
                    // is handled on the newtype itself.
                    if type_mentions(&field.ty, &key) {
                        continue;
                    }
                    let Some(fragment) = fragments.get(&key) else {
                        continue;
                    };
                    let marker = if is_option(&field.ty) {
                        format!("::std::option::Option<spec_schema::{key}>")
                    } else {
                        format!("spec_schema::{key}")
                    };
                    field.attrs.push(parse_quote!(#[schemars(with = #marker)]));
                    used.insert(key, fragment.clone());
                }
            }
            _ => {}
        }
    }
    if !used.is_empty() {
        types.1.push(marker_module(&used));
    }
    Ok(())
}

/// Every constrained schema in the spec, keyed by the name typify gives its type:
/// components by their name, inline properties as `{Component}{Property}`,
/// inline parameters as `{OperationId}{Parameter}`.
fn fragments(spec: &OpenAPI) -> BTreeMap<String, Value> {
    let mut found = BTreeMap::new();
    let mut add = |name: String, schema: Value| {
        if let Some(fragment) = constraint_fragment(&schema) {
            found.insert(name, fragment);
        }
    };
    if let Some(components) = &spec.components {
        for (name, schema) in &components.schemas {
            let schema = serde_json::to_value(schema).expect("a parsed schema serialises");
            if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
                for (property, schema) in properties {
                    add(format!("{name}{}", pascal(property)), schema.clone());
                }
            }
            add(name.clone(), schema);
        }
    }
    for (_, item) in spec.paths.iter() {
        let ReferenceOr::Item(item) = item else {
            continue;
        };
        for (_, operation) in item.iter() {
            let Some(id) = &operation.operation_id else {
                continue;
            };
            for parameter in &operation.parameters {
                let ReferenceOr::Item(parameter) = parameter else {
                    continue;
                };
                let data = parameter.parameter_data_ref();
                if let openapiv3::ParameterSchemaOrContent::Schema(schema) = &data.format {
                    let schema = serde_json::to_value(schema).expect("a parsed schema serialises");
                    add(format!("{}{}", pascal(id), pascal(&data.name)), schema);
                }
            }
        }
    }
    found
}

/// The type and constraint keywords of an inline schema, or `None` when it is a
/// reference or has no constraint worth carrying.
fn constraint_fragment(schema: &Value) -> Option<Value> {
    let object = schema.as_object()?;
    let telling_format = object
        .get("format")
        .and_then(Value::as_str)
        .is_some_and(|format| !FORMATS_OF_RUST_TYPES.contains(&format));
    if object.contains_key("$ref")
        || !(telling_format || CONSTRAINTS.iter().any(|key| object.contains_key(*key)))
    {
        return None;
    }
    let mut fragment = Map::new();
    for key in ["type", "format"].iter().chain(CONSTRAINTS) {
        if let Some(value) = object.get(*key) {
            fragment.insert((*key).to_string(), value.clone());
        }
    }
    Some(Value::Object(fragment))
}

fn marker_module(used: &BTreeMap<String, Value>) -> Item {
    let markers = used.iter().map(|(name, fragment)| {
        let ident = syn::Ident::new(name, proc_macro2_span());
        let json = fragment.to_string();
        quote_marker(&ident, &json)
    });
    let markers: Vec<Item> = markers.collect();
    parse_quote! {
        /// Marker types whose JSON Schemas are fragments of openapi.yaml, so
        /// that the derived `JsonSchema` impls carry the spec's constraints.
        mod spec_schema {
            macro_rules! spec_schema {
                ($name:ident, $json:literal) => {
                    pub struct $name;
                    impl ::schemars::JsonSchema for $name {
                        fn is_referenceable() -> bool {
                            false
                        }
                        fn schema_name() -> ::std::string::String {
                            ::std::string::String::from(stringify!($name))
                        }
                        fn json_schema(
                            _: &mut ::schemars::r#gen::SchemaGenerator,
                        ) -> ::schemars::schema::Schema {
                            ::serde_json::from_str($json)
                                .expect("xtask writes valid JSON Schema fragments")
                        }
                    }
                };
            }
            #(#markers)*
        }
    }
}

fn quote_marker(ident: &syn::Ident, json: &str) -> Item {
    // A raw string keeps the fragment readable in the generated file.
    let json: syn::LitStr = if json.contains("\"#") {
        syn::LitStr::new(json, proc_macro2_span())
    } else {
        syn::parse_str(&format!("r#\"{json}\"#")).expect("a raw string literal parses")
    };
    parse_quote!(spec_schema!(#ident, #json);)
}

fn proc_macro2_span() -> proc_macro2::Span {
    proc_macro2::Span::call_site()
}

/// `image_width` → `ImageWidth`, `get_generation_job` → `GetGenerationJob`,
/// `Idempotency-Key` → `IdempotencyKey`: the way typify names inline types.
pub fn pascal(name: &str) -> String {
    name.split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|part| !part.is_empty())
        .map(|part| {
            let mut chars = part.chars();
            let first = chars.next().expect("non-empty part").to_ascii_uppercase();
            std::iter::once(first).chain(chars).collect::<String>()
        })
        .collect()
}

fn is_option(ty: &Type) -> bool {
    matches!(ty, Type::Path(path) if path.path.segments.last().is_some_and(|s| s.ident == "Option"))
}

fn type_mentions(ty: &Type, name: &str) -> bool {
    let text = quote::ToTokens::to_token_stream(ty).to_string();
    text.split(|c: char| !c.is_alphanumeric() && c != '_')
        .any(|word| word == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pascal_follows_typify() {
        assert_eq!(pascal("image_width"), "ImageWidth");
        assert_eq!(pascal("get_generation_job"), "GetGenerationJob");
        assert_eq!(pascal("Idempotency-Key"), "IdempotencyKey");
    }

    #[test]
    fn fragments_keep_constraints_and_drop_prose() {
        let schema = serde_json::json!({
            "type": "integer", "format": "int32", "minimum": 256, "maximum": 2048,
            "multipleOf": 8, "default": 1024, "description": "Width."
        });
        let fragment = constraint_fragment(&schema).unwrap();
        assert_eq!(
            fragment,
            serde_json::json!({"type": "integer", "format": "int32", "minimum": 256,
                               "maximum": 2048, "multipleOf": 8})
        );
        assert!(constraint_fragment(&serde_json::json!({"type": "string"})).is_none());
        assert!(
            constraint_fragment(&serde_json::json!({"type": "string", "format": "date-time"}))
                .is_none()
        );
        assert!(
            constraint_fragment(&serde_json::json!({"type": "string", "format": "uri"})).is_some()
        );
        assert!(constraint_fragment(&serde_json::json!({"$ref": "#/x", "minLength": 1})).is_none());
    }
}
