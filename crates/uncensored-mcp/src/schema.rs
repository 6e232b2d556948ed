//! The tools' JSON Schemas. The request's fields and constraints (the
//! prompt's length, the sides' range and step, ...) come from the
//! schema the generated `uncensored_api::types::GenerateImageRequest` derives
//! from `openapi.yaml`: nothing here restates them. Every output schema
//! also describes the tool's error result, from [`ToolFailure`]'s own schema.

use serde_json::{Map, Value, json};

use crate::failure::ToolFailure;

/// The properties of the API's request body, with every `$ref` inlined and
/// without `callback_url` (the server waits, or runs the job itself).
fn request_properties() -> (Map<String, Value>, Vec<Value>) {
    let schema = schemars::schema_for!(uncensored_api::types::GenerateImageRequest);
    let schema = serde_json::to_value(schema).expect("a schema serializes");
    let definitions = schema
        .get("definitions")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let mut properties = schema
        .get("properties")
        .and_then(Value::as_object)
        .cloned()
        .expect("the request schema has properties");
    properties.remove("callback_url");
    for value in properties.values_mut() {
        inline(value, &definitions);
    }
    let required = schema
        .get("required")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    (properties, required)
}

/// Replaces `{"$ref": "#/definitions/X"}` (also inside `allOf`) by X itself,
/// so that every client reads the constraints in place.
fn inline(value: &mut Value, definitions: &Map<String, Value>) {
    match value {
        Value::Object(object) => {
            if let Some(Value::String(reference)) = object.get("$ref")
                && let Some(name) = reference.strip_prefix("#/definitions/")
                && let Some(Value::Object(definition)) = definitions.get(name)
            {
                let mut merged = definition.clone();
                object.remove("$ref");
                // The property's own description wins over the type's.
                merged.extend(std::mem::take(object));
                *object = merged;
            }
            if let Some(Value::Array(all)) = object.get("allOf")
                && all.len() == 1
            {
                let mut only = all[0].clone();
                inline(&mut only, definitions);
                object.remove("allOf");
                if let Value::Object(only) = only {
                    for (key, value) in only {
                        object.entry(key).or_insert(value);
                    }
                }
            }
            for child in object.values_mut() {
                inline(child, definitions);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|item| inline(item, definitions)),
        _ => {}
    }
}

fn object(properties: Map<String, Value>, required: Vec<Value>) -> Value {
    json!({
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": false,
    })
}

/// `generate_image`'s arguments: the request, `thumbnail` and `timeout_seconds`.
pub fn generate_input(max_timeout_seconds: u64) -> Value {
    let (mut properties, required) = request_properties();
    properties.insert(
        "thumbnail".into(),
        json!({"type": "boolean", "default": false,
               "description": "Also return a small JPEG thumbnail as image content."}),
    );
    properties.insert(
        "timeout_seconds".into(),
        json!({"type": "integer", "minimum": 1, "maximum": max_timeout_seconds,
               "description": "Stop waiting after this many seconds (the job goes on; ask get_job). Default: the server's."}),
    );
    object(properties, required)
}

/// `submit_generation`'s arguments: the request.
pub fn submit_input() -> Value {
    let (properties, required) = request_properties();
    object(properties, required)
}

/// `get_job`'s arguments.
pub fn get_job_input() -> Value {
    object(
        Map::from_iter([(
            "id".to_string(),
            json!({"type": "string", "minLength": 1,
                   "description": "A delivery id from submit_generation or generate_image, or an API job id."}),
        )]),
        vec![json!("id")],
    )
}

/// `list_images`' arguments.
pub fn list_input(max_limit: usize) -> Value {
    object(
        Map::from_iter([(
            "limit".to_string(),
            json!({"type": "integer", "minimum": 1, "maximum": max_limit, "default": 10,
                   "description": "How many deliveries, most recent first."}),
        )]),
        vec![],
    )
}

/// `get_balance`'s arguments: none.
pub fn balance_input() -> Value {
    object(Map::new(), vec![])
}

/// The money fields of the balance: `(name, description)`.
pub const BALANCE_FIELDS: [(&str, &str); 5] = [
    ("balance", "The whole balance, held funds included"),
    ("held", "Funds held for async jobs still pending"),
    ("available", "What can be spent now"),
    ("daily_spend", "Spent since UTC midnight"),
    ("monthly_spend", "Spent in the current UTC calendar month"),
];

/// What `get_balance` answers: each amount in nanos (`balance_nanos`, ...)
/// and in USD for people (`balance`, ...), or a failure.
pub fn balance_output() -> Value {
    let mut properties = Map::new();
    let mut required = Vec::new();
    for (name, description) in BALANCE_FIELDS {
        let nanos = format!("{name}_nanos");
        properties.insert(
            nanos.clone(),
            json!({"type": "integer", "description": format!("{description}, in nanos (1 USD = 1,000,000,000 nanos).")}),
        );
        properties.insert(
            name.to_string(),
            json!({"type": "string", "description": format!("{description}, in USD ($12.50).")}),
        );
        required.push(json!(nanos));
    }
    with_failure(
        json!({"type": "object", "properties": properties, "required": required}),
        "Why the call failed (a result with isError): a key without the billing:read scope, for one.",
    )
}

fn nullable(kind: &str, description: &str) -> Value {
    json!({"type": [kind, "null"], "description": description})
}

/// What `generate_image`, `submit_generation` and `get_job` answer: a
/// delivery (with its `error` when it failed or stopped), or a failure.
pub fn delivery_output() -> Value {
    with_failure(
        json!({
            "type": "object",
            "properties": {
                "id": {"type": "string", "description": "This delivery's id (for get_job)."},
                "status": {"type": "string", "description": "pending, accepted, generated, stored, failed or stopped for a delivery; the API's status for a bare job."},
                "job_id": nullable("string", "The API's job id, once known."),
                "uri": nullable("string", "The stored image as an MCP resource."),
                "location": nullable("string", "Where the image is stored (a path or a bucket URL)."),
                "sha256": nullable("string", "SHA-256 of the stored image."),
                "name": nullable("string", "The stored image's name inside the storage."),
                "size": nullable("integer", "The stored image's size in bytes."),
                "prompt": nullable("string", "The prompt, once stored."),
                "created_at": nullable("string", "When the image was stored (RFC 3339)."),
                "model": nullable("string", "The model that made it."),
                "width": nullable("integer", "Width in pixels."),
                "height": nullable("integer", "Height in pixels."),
                "generation_time": nullable("number", "Seconds the generation took."),
                "share_url": nullable("string", "A URL that shows the image for a while, when the storage makes one."),
                "cost_nanos": nullable("integer", "generate_image: what the image costs, in nanos (1 USD = 1,000,000,000 nanos), as the API's estimate priced it when it was submitted."),
                "cost": nullable("string", "generate_image: the same cost in USD, for people ($0.004)."),
            },
            "required": ["id", "status"]
        }),
        "Why the call failed (a result with isError), or why the delivery failed or stopped.",
    )
}

/// What `list_images` answers, or a failure.
pub fn list_output() -> Value {
    with_failure(
        json!({
            "type": "object",
            "properties": {
                "images": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "id": {"type": "string"},
                            "prompt": {"type": "string"},
                            "model": nullable("string", "The model, as reported or requested."),
                            "status": {"type": "string"},
                            "location": nullable("string", "Where it is stored, once stored."),
                            "uri": nullable("string", "The stored image as an MCP resource."),
                            "updated_at": {"type": "string", "format": "date-time"}
                        },
                        "required": ["id", "prompt", "status", "updated_at"]
                    }
                }
            },
            "required": ["images"]
        }),
        "Why the call failed (a result with isError).",
    )
}

/// The JSON Schema of [`ToolFailure`], derived from the type, inlined and
/// without a `$schema` of its own.
fn failure() -> Value {
    let generator = schemars::r#gen::SchemaSettings::draft07()
        .with(|settings| {
            settings.inline_subschemas = true;
            settings.meta_schema = None;
        })
        .into_generator();
    let schema = generator.into_root_schema_for::<ToolFailure>();
    let mut schema = serde_json::to_value(schema).expect("a schema serializes");
    // A Rust type's name means nothing to a client.
    if let Some(object) = schema.as_object_mut() {
        object.remove("title");
    }
    schema
}

/// A tool's output schema: `success` (an object schema, what the tool
/// answers) widened to its error result too, `{"error": ToolFailure}` sent
/// with `isError: true`. MCP clients validate every result against the output
/// schema, error results included (the TypeScript SDK does, and turns a
/// mismatch into a protocol error that hides the failure), and require
/// `type: object` at the top. So: one object whose properties hold both
/// shapes, and whose `anyOf` requires either the success's fields or `error`
/// (described as `error_description`).
fn with_failure(success: Value, error_description: &str) -> Value {
    let Value::Object(mut schema) = success else {
        unreachable!("output schemas are objects")
    };
    let required = schema
        .remove("required")
        .filter(|required| required.as_array().is_some_and(|r| !r.is_empty()))
        .expect("a success shape requires a field, or anything would match it");
    let mut error = failure();
    error["description"] = json!(error_description);
    schema
        .get_mut("properties")
        .and_then(Value::as_object_mut)
        .expect("output schemas have properties")
        .insert("error".into(), error);
    schema.insert(
        "anyOf".into(),
        json!([{"required": required}, {"required": ["error"]}]),
    );
    Value::Object(schema)
}
