use std::path::{Path, PathBuf};

use super::*;
use crate::api_release::{crate_version, verdict};
use crate::codegen::{SPEC, parse_spec};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn spec_text() -> String {
    std::fs::read_to_string(root().join(SPEC)).unwrap()
}

/// The report from openapi.yaml to an edited copy; the edit must apply.
fn report_after(edit: impl Fn(&str) -> String) -> Report {
    let text = spec_text();
    let edited = edit(&text);
    assert_ne!(edited, text, "the edit must apply");
    compare(&parse_spec(&text).unwrap(), &parse_spec(&edited).unwrap())
}

fn find<'r>(report: &'r Report, place: &str, what: &str) -> &'r Change {
    report
        .changes
        .iter()
        .find(|c| c.place == place && c.what.contains(what))
        .unwrap_or_else(|| panic!("no change `{what}` at `{place}` in:\n{}", report.render()))
}

const V010: Version = Version {
    major: 0,
    minor: 1,
    patch: 0,
};

fn v(text: &str) -> Version {
    Version::parse(text).unwrap()
}

/// Asserts the bump a report needs from 0.1.0, and that the version check
/// refuses every version below it and accepts it.
fn assert_needs(report: &Report, needed: &str, refused: &[&str]) {
    assert_eq!(
        V010.required(report.worst()).to_string(),
        needed,
        "{}",
        report.render()
    );
    verdict(V010, v(needed), report).unwrap();
    for version in refused {
        let message = verdict(V010, v(version), report).unwrap_err();
        assert!(message.contains(&format!("at least {needed}")), "{message}");
        assert!(message.contains("cargo xtask release"), "{message}");
    }
}

fn remove_operation(text: &str) -> String {
    let start = text.find("  /v1/images/generation/jobs/{job_id}:").unwrap();
    // Up to the next path, or to the components when it is the last one.
    let rest = &text[start + 1..];
    let end = start
        + 1
        + rest
            .find("\n  /v1/")
            .or_else(|| rest.find("\ncomponents:"))
            .unwrap();
    format!("{}{}", &text[..start], &text[end + 1..])
}

#[test]
fn the_same_spec_has_no_changes_and_needs_no_bump() {
    let spec = parse_spec(&spec_text()).unwrap();
    let report = compare(&spec, &spec);
    assert!(report.changes.is_empty(), "{}", report.render());
    assert_eq!(V010.required(report.worst()), V010);
    verdict(V010, V010, &report).unwrap();
}

#[test]
fn a_removed_response_field_is_breaking() {
    let report = report_after(|t| {
        t.replacen(
            "        image_url:\n          type: string\n          description: The generated image, once the job is `completed`.\n",
            "",
            1,
        )
    });
    let change = find(
        &report,
        "GenerationJob.image_url (response)",
        "field removed",
    );
    // Optional: the old client parses a body without it, but its field is gone.
    assert_eq!(
        (change.wire, change.rust),
        (Impact::Compatible, Impact::Breaking)
    );
    assert_needs(&report, "0.2.0", &["0.1.0", "0.1.1"]);
}

#[test]
fn a_removed_required_response_field_is_breaking_on_the_wire() {
    let report = report_after(|t| {
        t.replacen(
            "      required: [request_id, status]\n      properties:\n        request_id:\n          type: string\n          description: The `job_id` of the job this callback is about.\n",
            "      required: [status]\n      properties:\n",
            1,
        )
    });
    // WebhookPayload is in no operation's body: nothing to report.
    assert!(report.changes.is_empty(), "{}", report.render());
    let report = report_after(|t| {
        t.replacen("      required: [job_id, status]\n      properties:\n        job_id:\n          type: string\n          description: The job's identifier.\n        status:\n          $ref: \"#/components/schemas/JobStatus\"\n        image_url:", "      required: [status]\n      properties:\n        status:\n          $ref: \"#/components/schemas/JobStatus\"\n        image_url:", 1)
    });
    let change = find(&report, "GenerationJob.job_id (response)", "field removed");
    assert_eq!(
        (change.wire, change.rust),
        (Impact::Breaking, Impact::Breaking)
    );
}

#[test]
fn a_lowered_max_length_of_a_request_field_is_breaking() {
    let report = report_after(|t| t.replacen("maxLength: 2000", "maxLength: 1000", 1));
    let change = find(
        &report,
        "GenerateImageRequest.prompt (request)",
        "maxLength lowered from 2000 to 1000",
    );
    assert_eq!(
        (change.wire, change.rust),
        (Impact::Breaking, Impact::Breaking)
    );
    assert_eq!(report.changes.len(), 1, "{}", report.render());
    assert_needs(&report, "0.2.0", &["0.1.0", "0.1.5"]);
}

#[test]
fn a_removed_operation_is_breaking_and_its_report_reads_so() {
    let report = report_after(remove_operation);
    let change = find(&report, "operation get_generation_job", "removed");
    assert_eq!(change.impact(), Impact::Breaking);
    assert_needs(&report, "0.2.0", &["0.1.0", "0.1.9"]);
    insta::assert_snapshot!(report.render());
}

#[test]
fn a_raised_max_length_of_a_request_field_is_compatible() {
    let report = report_after(|t| t.replacen("maxLength: 2000", "maxLength: 4000", 1));
    let change = find(
        &report,
        "GenerateImageRequest.prompt (request)",
        "maxLength raised",
    );
    assert_eq!(
        (change.wire, change.rust),
        (Impact::Compatible, Impact::Compatible)
    );
    assert_needs(&report, "0.1.1", &["0.1.0"]);
}

#[test]
fn an_added_operation_is_compatible() {
    // The removed operation, put back: an addition.
    let text = spec_text();
    let without = parse_spec(&remove_operation(&text)).unwrap();
    let report = compare(&without, &parse_spec(&text).unwrap());
    let change = find(
        &report,
        "operation get_generation_job",
        "added (GET /v1/images/generation/jobs/{job_id})",
    );
    assert_eq!(
        (change.wire, change.rust),
        (Impact::Compatible, Impact::Compatible)
    );
    assert_eq!(report.changes.len(), 1, "{}", report.render());
    assert_needs(&report, "0.1.1", &["0.1.0"]);
}

#[test]
fn a_new_error_status_is_compatible_a_new_success_status_is_not() {
    let error = report_after(|t| {
        t.replacen(
            "        \"404\":\n          $ref: \"#/components/responses/NotFound\"\n        \"429\":",
            "        \"402\":\n          $ref: \"#/components/responses/InsufficientFunds\"\n        \"404\":\n          $ref: \"#/components/responses/NotFound\"\n        \"429\":",
            1,
        )
    });
    let change = find(&error, "operation get_generation_job response 402", "added");
    assert_eq!(change.impact(), Impact::Compatible);
    assert_needs(&error, "0.1.1", &["0.1.0"]);
    let success = report_after(|t| {
        t.replacen(
            "                    status: processing\n                    model: model-pro\n                    created_at: \"2026-05-09T10:30:00Z\"\n        \"400\":",
            "                    status: processing\n                    model: model-pro\n                    created_at: \"2026-05-09T10:30:00Z\"\n        \"203\":\n          description: From a cache.\n          content:\n            application/json:\n              schema:\n                $ref: \"#/components/schemas/GenerationJob\"\n        \"400\":",
            1,
        )
    });
    let change = find(
        &success,
        "operation get_generation_job response 203",
        "the old client calls it an error",
    );
    assert_eq!(
        (change.wire, change.rust),
        (Impact::Breaking, Impact::Compatible)
    );
    assert_needs(&success, "0.2.0", &["0.1.1"]);
}

#[test]
fn an_added_optional_request_field_is_compatible_on_the_wire_but_not_in_rust() {
    let report = report_after(|t| {
        t.replacen(
            "        quality:\n",
            "        seed:\n          type: integer\n          format: int64\n        quality:\n",
            1,
        )
    });
    let change = find(
        &report,
        "GenerateImageRequest.seed (request)",
        "optional field added",
    );
    // A struct of public fields without #[non_exhaustive]: struct literals break.
    assert_eq!(
        (change.wire, change.rust),
        (Impact::Compatible, Impact::Breaking)
    );
    assert_needs(&report, "0.2.0", &["0.1.1"]);
}

#[test]
fn a_new_required_request_field_and_a_new_required_parameter_are_breaking() {
    let report = report_after(|t| {
        t.replacen(
            "      required: [prompt]\n",
            "      required: [prompt, quality]\n",
            1,
        )
    });
    let change = find(
        &report,
        "GenerateImageRequest.quality (request)",
        "made required",
    );
    assert_eq!(change.wire, Impact::Breaking);
    let report = report_after(|t| {
        t.replacen(
            "      parameters:\n        - name: job_id\n",
            "      parameters:\n        - name: fields\n          in: query\n          required: true\n          schema:\n            type: string\n        - name: job_id\n",
            1,
        )
    });
    let change = find(
        &report,
        "operation get_generation_job parameter query fields",
        "added, required",
    );
    assert_eq!(change.impact(), Impact::Breaking);
}

#[test]
fn enum_values_are_classed_by_direction() {
    let with_enum = |values: &str| {
        let text = spec_text().replacen(
            "      example: completed\n\n    JobError:",
            &format!("      enum: [{values}]\n      example: completed\n\n    JobError:"),
            1,
        );
        assert_ne!(text, spec_text(), "the edit must apply");
        parse_spec(&text).unwrap()
    };
    let two = with_enum("processing, completed");
    let three = with_enum("processing, completed, failed");
    // JobStatus is in responses only: a new value fails the old client's parse.
    let report = compare(&two, &three);
    let change = find(
        &report,
        "JobStatus (response)",
        "enum value(s) \"failed\" added",
    );
    assert_eq!(
        (change.wire, change.rust),
        (Impact::Breaking, Impact::Breaking)
    );
    let report = compare(&three, &two);
    let change = find(&report, "JobStatus (response)", "removed");
    assert_eq!(change.wire, Impact::Compatible);
}

#[test]
fn security_and_multiple_of_are_compared() {
    let report = report_after(|t| t.replacen("      name: x-api-key\n", "      name: x-key\n", 1));
    let change = find(&report, "security scheme ApiKeyAuth", "changed");
    assert_eq!(change.wire, Impact::Breaking);
    let report = report_after(|t| t.replacen("multipleOf: 8", "multipleOf: 16", 1));
    let change = find(
        &report,
        "GenerateImageRequest.image_width (request)",
        "multipleOf changed from 8 to 16",
    );
    assert_eq!(change.wire, Impact::Breaking);
    let report = report_after(|t| t.replacen("multipleOf: 8", "multipleOf: 4", 1));
    assert_eq!(
        report.worst(),
        Some(Impact::Compatible),
        "{}",
        report.render()
    );
}

#[test]
fn versions_bump_by_cargo_semver() {
    assert_eq!(v("0.1.3").required(Some(Impact::Breaking)), v("0.2.0"));
    assert_eq!(v("0.1.3").required(Some(Impact::Compatible)), v("0.1.4"));
    assert_eq!(v("1.2.3").required(Some(Impact::Breaking)), v("2.0.0"));
    assert_eq!(v("1.2.3").required(Some(Impact::Compatible)), v("1.3.0"));
    assert_eq!(v("0.1.3").required(None), v("0.1.3"));
    assert!(Version::parse("0.1").is_err());
    assert!(Version::parse("0.1.0-rc.1").is_err());
    let report = Report::default();
    assert!(
        verdict(v("0.2.0"), v("0.1.9"), &report)
            .unwrap_err()
            .contains("older")
    );
}

/// A scratch workspace with the given root manifest and crate manifest.
fn scratch(name: &str, workspace: &str, krate: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("xtask-api-{name}-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("crates/uncensored-api")).unwrap();
    std::fs::write(dir.join("Cargo.toml"), workspace).unwrap();
    std::fs::write(dir.join("crates/uncensored-api/Cargo.toml"), krate).unwrap();
    dir
}

#[test]
fn the_crate_version_follows_the_workspace_and_must_match_its_dependency_line() {
    let inherits = "[package]\nname = \"uncensored-api\"\nversion.workspace = true\n";
    let dir = scratch(
        "inherits",
        "[workspace.package]\nversion = \"0.2.0\"\n[workspace.dependencies]\nuncensored-api = { path = \"crates/uncensored-api\", version = \"0.2.0\" }\n",
        inherits,
    );
    assert_eq!(crate_version(&dir).unwrap(), v("0.2.0"));
    let stale = scratch(
        "stale",
        "[workspace.package]\nversion = \"0.2.0\"\n[workspace.dependencies]\nuncensored-api = { path = \"crates/uncensored-api\", version = \"0.1.0\" }\n",
        inherits,
    );
    let error = crate_version(&stale).unwrap_err().to_string();
    assert!(error.contains("version = \"0.2.0\""), "{error}");
    let own = scratch(
        "own",
        "[workspace.package]\nversion = \"0.1.0\"\n",
        "[package]\nname = \"uncensored-api\"\nversion = \"0.3.1\"\n",
    );
    assert_eq!(crate_version(&own).unwrap(), v("0.3.1"));
    for dir in [dir, stale, own] {
        std::fs::remove_dir_all(dir).unwrap();
    }
    // The real workspace parses.
    crate_version(&root()).unwrap();
}

#[test]
fn the_release_flow_in_a_scratch_workspace() {
    use crate::api_release::{RELEASE_STAMP, RELEASED_SPEC, check, release};
    let manifest = |version: &str| {
        format!(
            "[workspace.package]\nversion = \"{version}\"\n[workspace.dependencies]\nuncensored-api = {{ path = \"crates/uncensored-api\", version = \"{version}\" }}\n"
        )
    };
    let dir = scratch(
        "flow",
        &manifest("0.1.0"),
        "[package]\nname = \"uncensored-api\"\nversion.workspace = true\n",
    );
    let text = spec_text();
    let write_spec = |text: &str| {
        std::fs::write(dir.join(SPEC), text).unwrap();
        let spec = parse_spec(text).unwrap();
        std::fs::create_dir_all(dir.join("crates/uncensored-api/src")).unwrap();
        std::fs::write(
            dir.join(crate::codegen::GENERATED),
            crate::codegen::render(&spec).unwrap(),
        )
        .unwrap();
        std::fs::write(
            dir.join(crate::limits::LIMITS),
            crate::limits::render(&spec).unwrap(),
        )
        .unwrap();
    };
    write_spec(&text);
    // No record yet: the check says how to make one.
    let error = format!("{:#}", check(&dir).unwrap_err());
    assert!(error.contains("cargo xtask release"), "{error}");
    release(&dir).unwrap();
    assert_eq!(
        std::fs::read_to_string(dir.join(RELEASED_SPEC)).unwrap(),
        text
    );
    assert!(
        std::fs::read_to_string(dir.join(RELEASE_STAMP))
            .unwrap()
            .contains("version = \"0.1.0\"")
    );
    check(&dir).unwrap();

    // A breaking edit without a bump fails the check, and release refuses it.
    write_spec(&remove_operation(&text));
    let error = format!("{:#}", check(&dir).unwrap_err());
    assert!(
        error.contains("operation get_generation_job: removed"),
        "{error}"
    );
    assert!(error.contains("at least 0.2.0"), "{error}");
    assert!(release(&dir).is_err());
    std::fs::write(dir.join("Cargo.toml"), manifest("0.1.1")).unwrap();
    assert!(check(&dir).is_err(), "a patch bump is not enough");
    std::fs::write(dir.join("Cargo.toml"), manifest("0.2.0")).unwrap();
    check(&dir).unwrap();
    release(&dir).unwrap();
    assert!(
        std::fs::read_to_string(dir.join(RELEASE_STAMP))
            .unwrap()
            .contains("version = \"0.2.0\"")
    );
    // Released: the same spec needs no further bump.
    check(&dir).unwrap();
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_changed_default_is_compatible_on_the_wire_but_not_in_rust() {
    let report =
        report_after(|t| t.replacen("          default: 1024\n", "          default: 512\n", 1));
    let change = find(
        &report,
        "GenerateImageRequest.image_width (request)",
        "default changed from 1024 to 512",
    );
    assert_eq!(
        (change.wire, change.rust),
        (Impact::Compatible, Impact::Breaking)
    );
}

#[test]
fn a_renamed_or_moved_operation_is_breaking() {
    let report = report_after(|t| {
        t.replacen(
            "operationId: get_generation_job\n",
            "operationId: read_job\n",
            1,
        )
    });
    let change = find(
        &report,
        "operation get_generation_job",
        "operationId renamed to read_job",
    );
    assert_eq!(
        (change.wire, change.rust),
        (Impact::Compatible, Impact::Breaking)
    );
    assert!(
        report
            .changes
            .iter()
            .all(|c| !c.what.starts_with("removed")),
        "{}",
        report.render()
    );
    let report = report_after(|t| {
        t.replacen(
            "  /v1/images/generation/jobs/{job_id}:\n",
            "  /v2/jobs/{job_id}:\n",
            1,
        )
    });
    let change = find(
        &report,
        "operation get_generation_job",
        "moved from GET /v1/images/generation/jobs/{job_id} to GET /v2/jobs/{job_id}",
    );
    assert_eq!(
        (change.wire, change.rust),
        (Impact::Breaking, Impact::Compatible)
    );
}
