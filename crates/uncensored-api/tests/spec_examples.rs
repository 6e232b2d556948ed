//! Every example in openapi.yaml goes through the generated types and back,
//! and the JSON Schema derived from the request type carries the spec's
//! constraints. Snapshots show exactly what the wire carries.

use serde_json::Value;
use uncensored_api::types::{
    Balance, ErrorEnvelope, Estimate, GenerateImageRequest, GenerationJob, GenerationResponse,
    SpendLimits, SpendLimitsRequest, TransactionPage, WebhookPayload,
};

fn spec() -> Value {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../openapi.yaml"))
        .expect("openapi.yaml is at the workspace root");
    serde_yaml_ng::from_str(&text).expect("openapi.yaml parses")
}

/// Follows a `#/components/...` reference.
fn resolve<'a>(spec: &'a Value, node: &'a Value) -> &'a Value {
    match node.get("$ref").and_then(Value::as_str) {
        Some(reference) => {
            let pointer = reference.strip_prefix('#').expect("local reference");
            resolve(
                spec,
                spec.pointer(pointer)
                    .unwrap_or_else(|| panic!("{reference} resolves")),
            )
        }
        None => node,
    }
}

/// Deserialises `example` into the type generated for `schema` and serialises it back.
fn round_trip(schema: &str, example: &Value) -> Value {
    fn through<T: serde::de::DeserializeOwned + serde::Serialize>(example: &Value) -> Value {
        let typed: T = serde_json::from_value(example.clone())
            .unwrap_or_else(|e| panic!("example does not fit its type: {e}\n{example:#}"));
        serde_json::to_value(typed).unwrap()
    }
    match schema {
        "GenerateImageRequest" => through::<GenerateImageRequest>(example),
        "GenerationResponse" => through::<GenerationResponse>(example),
        "GenerationJob" => through::<GenerationJob>(example),
        "ErrorEnvelope" => through::<ErrorEnvelope>(example),
        "WebhookPayload" => through::<WebhookPayload>(example),
        "Balance" => through::<Balance>(example),
        "Estimate" => through::<Estimate>(example),
        "TransactionPage" => through::<TransactionPage>(example),
        "SpendLimitsRequest" => through::<SpendLimitsRequest>(example),
        "SpendLimits" => through::<SpendLimits>(example),
        other => panic!("no generated type is mapped for schema {other}; add it to round_trip"),
    }
}

/// Every (name, schema, example) of a media-type object.
fn examples_of(spec: &Value, label: &str, media: &Value) -> Vec<(String, String, Value)> {
    let schema = media["schema"]["$ref"]
        .as_str()
        .and_then(|r| r.rsplit('/').next())
        .unwrap_or_else(|| panic!("{label}: schema is a component reference"))
        .to_string();
    let mut found = Vec::new();
    if let Some(example) = media.get("example") {
        found.push((label.to_string(), schema.clone(), example.clone()));
    }
    if let Some(examples) = media.get("examples").and_then(Value::as_object) {
        for (name, example) in examples {
            let value = resolve(spec, example)["value"].clone();
            found.push((format!("{label}_{name}"), schema.clone(), value));
        }
    }
    found
}

fn all_examples(spec: &Value) -> Vec<(String, String, Value)> {
    let mut found = Vec::new();
    for (_, item) in spec["paths"].as_object().unwrap() {
        for (_, operation) in item.as_object().unwrap() {
            let id = operation["operationId"].as_str().unwrap();
            if let Some(body) = operation.get("requestBody") {
                let media = &resolve(spec, body)["content"]["application/json"];
                found.extend(examples_of(spec, &format!("{id}_request"), media));
            }
            for (status, response) in operation["responses"].as_object().unwrap() {
                let media = &resolve(spec, response)["content"]["application/json"];
                found.extend(examples_of(spec, &format!("{id}_{status}"), media));
            }
            for (callback, expressions) in operation
                .get("callbacks")
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
            {
                for (_, item) in expressions.as_object().unwrap() {
                    let media = &item["post"]["requestBody"]["content"]["application/json"];
                    found.extend(examples_of(
                        spec,
                        &format!("{id}_callback_{callback}"),
                        media,
                    ));
                }
            }
        }
    }
    found
}

/// `value` keeps every non-null field of `original` unchanged.
fn assert_preserves(original: &Value, value: &Value, path: &str) {
    match original {
        Value::Object(fields) => {
            for (key, field) in fields {
                if !field.is_null() {
                    assert_preserves(field, &value[key], &format!("{path}.{key}"));
                }
            }
        }
        _ => assert_eq!(original, value, "{path} changed in the round trip"),
    }
}

#[test]
fn every_spec_example_round_trips_through_the_generated_types() {
    let spec = spec();
    let examples = all_examples(&spec);
    // Images: 2 request, 2 success, 11 + 7 error, 2 job and 1 callback
    // examples. Billing: 2 request, 4 success and 5 + 7 + 7 + 6 error examples.
    assert_eq!(
        examples.len(),
        56,
        "{:?}",
        examples.iter().map(|e| &e.0).collect::<Vec<_>>()
    );
    for (name, schema, example) in examples {
        let back = round_trip(&schema, &example);
        assert_preserves(&example, &back, &name);
        insta::assert_json_snapshot!(name, back);
    }
}

#[test]
fn an_undocumented_job_status_is_data_not_an_error() {
    let job: GenerationJob = serde_json::from_value(serde_json::json!({
        "job_id": "j-1", "status": "failed", "error": {"message": "upstream refused", "code": "upstream"}
    }))
    .unwrap();
    assert_eq!(job.status.as_str(), "failed");
    assert_eq!(job.error.unwrap().code.as_deref(), Some("upstream"));
}

#[test]
fn request_json_schema_carries_the_spec_constraints() {
    let schema = serde_json::to_value(schemars::schema_for!(GenerateImageRequest)).unwrap();
    let width = &schema["properties"]["image_width"];
    assert_eq!(width["minimum"], 256.0);
    assert_eq!(width["maximum"], 2048.0);
    assert_eq!(width["multipleOf"], 8.0);
    assert_eq!(width["default"], 1024);
    let prompt = &schema["properties"]["prompt"];
    assert_eq!(prompt["maxLength"], 2000);
    assert_eq!(prompt["minLength"], 1);
    assert_eq!(schema["properties"]["callback_url"]["format"], "uri");
    assert_eq!(schema["properties"]["model"]["default"], "model-dev");
    assert_eq!(schema["required"], serde_json::json!(["prompt"]));
    insta::assert_json_snapshot!(schema);
}

#[test]
fn idempotency_key_schema_carries_its_pattern() {
    let schema =
        serde_json::to_value(schemars::schema_for!(uncensored_api::types::IdempotencyKey)).unwrap();
    assert_eq!(schema["pattern"], "^[A-Za-z0-9_.:/-]{1,255}$");
    assert_eq!(schema["maxLength"], 255);
}

#[test]
fn constrained_types_refuse_what_the_spec_forbids() {
    use uncensored_api::types::{GenerateImageRequestPrompt, IdempotencyKey};
    assert!(GenerateImageRequestPrompt::try_from("").is_err());
    // Length is counted in characters, not bytes: 2,000 emoji are allowed.
    assert!(GenerateImageRequestPrompt::try_from("🌅".repeat(2000)).is_ok());
    assert!(GenerateImageRequestPrompt::try_from("🌅".repeat(2001)).is_err());
    assert!(IdempotencyKey::try_from("batch-7:line_3/v1.2").is_ok());
    assert!(IdempotencyKey::try_from("has space").is_err());
    assert!(IdempotencyKey::try_from("k".repeat(256)).is_err());
    // Deserialising enforces the same rules.
    let error = serde_json::from_value::<GenerateImageRequest>(serde_json::json!({"prompt": ""}))
        .unwrap_err();
    assert!(error.to_string().contains("shorter than 1"), "{error}");
}
