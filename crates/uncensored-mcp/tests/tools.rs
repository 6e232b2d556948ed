//! The tool list as MCP clients read it: names, descriptions, and the input
//! and output schemas (the request's constraints come from the generated type).

use std::sync::Arc;

use uncensored::Client;
use uncensored_api::limits::generate_image_request as spec;
use uncensored_deliver::Deliverer;
use uncensored_deliver::journal::SqliteJournal;
use uncensored_deliver::storage::StorageUrl;
use uncensored_mcp::{McpOptions, McpServer};

#[test]
fn tool_list() {
    let client = Client::builder()
        .base_url("http://127.0.0.1:9")
        .api_key("unused")
        .build()
        .unwrap();
    let storage = Arc::new(StorageUrl::parse("memory://").unwrap().open().unwrap());
    let journal = Arc::new(SqliteJournal::in_memory().unwrap());
    let server = McpServer::new(
        Deliverer::new(client, storage, journal),
        McpOptions::default(),
    );
    let tools = server.tool_list();
    let width = &tools[0]["inputSchema"]["properties"]["image_width"];
    let number = |key: &str| width[key].as_f64();
    assert_eq!(
        (number("minimum"), number("maximum"), number("multipleOf")),
        (
            Some(f64::from(spec::IMAGE_WIDTH_MINIMUM)),
            Some(f64::from(spec::IMAGE_WIDTH_MAXIMUM)),
            Some(f64::from(spec::IMAGE_WIDTH_MULTIPLE_OF))
        ),
        "the API's side constraints reach the schema"
    );
    insta::assert_json_snapshot!(tools);
}
