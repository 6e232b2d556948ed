//! The one module that knows `rmcp`: the server handler, its transports, and
//! the mapping of the tools' typed results onto MCP messages. A major version
//! of `rmcp` changes this file only.

use std::sync::Arc;
use std::time::Duration;

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    ListResourceTemplatesResult, ListResourcesResult, ListToolsResult, PaginatedRequestParams,
    ProgressNotificationParam, ReadResourceRequestParams, ReadResourceResponse, ReadResourceResult,
    Resource, ResourceContents, ResourceTemplate, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::RequestContext;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData, RoleServer, ServerHandler, ServiceExt as _};
use serde_json::{Map, Value, json};
use uncensored::{CancellationToken, FailureReason};
use uncensored_deliver::DeliveryReason;
use uncensored_deliver::serve::{require_bearer, serve};

use crate::args::{BalanceArgs, GenerateArgs, GetJobArgs, ListArgs, RequestArgs, parse};
use crate::failure::ToolFailure;
use crate::tools::{Progress, Tools, delivery_value};
use crate::{HttpOptions, McpError, resources, schema};

/// The handler: cheap to clone, one per session.
#[derive(Debug, Clone)]
pub struct Handler(pub Arc<Tools>);

/// The tool list, as `tools/list` answers it.
pub fn tool_list(tools: &Tools) -> Vec<Tool> {
    let options = &tools.options;
    let object = |value: Value| match value {
        Value::Object(map) => Arc::new(map),
        _ => unreachable!("schemas are objects"),
    };
    vec![
        Tool::new(
            "generate_image",
            "Generate an image from a text prompt, wait for it (with progress), store it and \
             return a resource_link to it with its job id, location, SHA-256, model, size, \
             generation time and cost. Set thumbnail to also get a small JPEG preview.",
            object(schema::generate_input(options.max_wait.as_secs())),
        )
        .with_title("Generate an image")
        .with_raw_output_schema(object(schema::delivery_output())),
        Tool::new(
            "submit_generation",
            "Start generating, storing and announcing an image, and return its delivery id at \
             once; ask get_job for its status and, once stored, its location.",
            object(schema::submit_input()),
        )
        .with_title("Submit a generation")
        .with_raw_output_schema(object(schema::delivery_output())),
        Tool::new(
            "get_job",
            "The status of a delivery (and where its image is stored, once it is), or of an API \
             job by its id.",
            object(schema::get_job_input()),
        )
        .with_title("Get a job")
        .with_raw_output_schema(object(schema::delivery_output())),
        Tool::new(
            "list_images",
            "The most recent deliveries from the journal: prompt, model, status and location.",
            object(schema::list_input(options.max_list)),
        )
        .with_title("List images")
        .with_raw_output_schema(object(schema::list_output())),
        Tool::new(
            "get_balance",
            "The account's balance: the whole of it, the funds held for async jobs still \
             running, what is available now, and the spend of the UTC day and month, each in \
             nanos and in USD. Needs a key with the billing:read scope.",
            object(schema::balance_input()),
        )
        .with_title("Get the balance")
        .with_raw_output_schema(object(schema::balance_output())),
    ]
}

fn failed(failure: &ToolFailure) -> CallToolResult {
    let mut result = CallToolResult::error(vec![ContentBlock::text(failure.text())]);
    result.structured_content = Some(json!({ "error": failure }));
    result
}

fn succeeded(text: String, value: Value, mut extra: Vec<ContentBlock>) -> CallToolResult {
    let mut content = vec![ContentBlock::text(text)];
    content.append(&mut extra);
    let mut result = CallToolResult::success(content);
    result.structured_content = Some(value);
    result
}

impl Handler {
    async fn generate(
        &self,
        arguments: Map<String, Value>,
        context: &RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ToolFailure> {
        let args: GenerateArgs = parse(arguments)?;
        let request = args.request()?;
        let options = &self.0.options;
        let timeout = args
            .timeout_seconds
            .map(Duration::from_secs)
            .unwrap_or(options.default_wait)
            .clamp(Duration::from_secs(1), options.max_wait);
        let cost = self.0.estimate(&request).await;
        let id = self.0.start(request);
        let token = context.meta.get_progress_token();
        let peer = context.peer.clone();
        let report = move |progress: Progress| {
            let peer = peer.clone();
            let token = token.clone();
            Box::pin(async move {
                if let Some(token) = token {
                    let note = ProgressNotificationParam::new(token, progress.elapsed)
                        .with_total(progress.total)
                        .with_message(progress.message);
                    if let Err(error) = peer.notify_progress(note).await {
                        tracing::debug!(%error, "a progress notification was not sent");
                    }
                }
            }) as std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>
        };
        let cancel: CancellationToken = context.ct.clone();
        let entry = self.0.wait(&id, timeout, &cancel, &report).await?;
        let mut value = delivery_value(&entry);
        if let Some(cost) = cost {
            value["cost_nanos"] = json!(cost.nanos());
            value["cost"] = json!(cost.to_string());
        }
        if let Some(error) = value.get("error").filter(|e| !e.is_null()) {
            let failure: ToolFailure = ToolFailure {
                field: error["field"].as_str().map(str::to_string),
                ..ToolFailure::new(
                    DeliveryReason::parse(error["reason"].as_str().unwrap_or_default()),
                    error["message"].as_str().unwrap_or_default(),
                )
            };
            return Err(failure);
        }
        let uri = resources::uri(&id);
        let location = entry.location().unwrap_or_default().to_string();
        let name = location.rsplit('/').next().unwrap_or(&id).to_string();
        let mime = resources::mime_of(&location);
        let mut extra = vec![ContentBlock::resource_link(
            Resource::new(uri.clone(), name).with_mime_type(mime),
        )];
        if args.thumbnail {
            match resources::thumbnail(&self.0, &uri).await {
                Ok(data) => extra.push(ContentBlock::image(data, "image/jpeg")),
                Err(failure) => extra.push(ContentBlock::text(failure.message)),
            }
        }
        Ok(succeeded(
            format!("stored at {location} ({uri})"),
            value,
            extra,
        ))
    }

    async fn call(
        &self,
        name: &str,
        arguments: Map<String, Value>,
        context: &RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ToolFailure> {
        match name {
            "generate_image" => self.generate(arguments, context).await,
            "submit_generation" => {
                let request = parse::<RequestArgs>(arguments)?.request()?;
                if let Some(value) = self.0.submit_async(&request).await? {
                    let text = format!(
                        "submitted job {} (delivery {}); the callback service stores it; ask get_job for it",
                        value["job_id"].as_str().unwrap_or("?"),
                        value["id"].as_str().unwrap_or("?"),
                    );
                    return Ok(succeeded(text, value, vec![]));
                }
                let id = self.0.start(request);
                let value = json!({"id": id, "status": "pending"});
                Ok(succeeded(
                    format!("started delivery {id}; ask get_job for it"),
                    value,
                    vec![],
                ))
            }
            "get_job" => {
                let args: GetJobArgs = parse(arguments)?;
                let value = self.0.get_job(&args.id).await?;
                let text = format!("{}: {}", args.id, value["status"].as_str().unwrap_or("?"));
                Ok(succeeded(text, value, vec![]))
            }
            "get_balance" => {
                parse::<BalanceArgs>(arguments)?;
                let value = self.0.balance().await?;
                let text = format!(
                    "balance {}, held {}, available {}, spent today {}, this month {}",
                    value["balance"].as_str().unwrap_or("?"),
                    value["held"].as_str().unwrap_or("?"),
                    value["available"].as_str().unwrap_or("?"),
                    value["daily_spend"].as_str().unwrap_or("?"),
                    value["monthly_spend"].as_str().unwrap_or("?"),
                );
                Ok(succeeded(text, value, vec![]))
            }
            "list_images" => {
                let args: ListArgs = parse(arguments)?;
                let limit = args.limit.unwrap_or(10).clamp(1, self.0.options.max_list);
                let value = self.0.list(limit).await?;
                let text = serde_json::to_string_pretty(&value).unwrap_or_default();
                Ok(succeeded(text, value, vec![]))
            }
            other => Err(ToolFailure::new(
                FailureReason::InvalidRequest,
                format!("no tool named {other:?}"),
            )),
        }
    }
}

impl ServerHandler for Handler {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_resources()
                .build(),
        )
        .with_server_info(Implementation::new("uncensored", env!("CARGO_PKG_VERSION")))
        .with_instructions(
            "Generate images with generate_image (or submit_generation and get_job for long \
             jobs); stored images are resources at uncensored://images/{id}; get_balance says \
             what is left to spend.",
        )
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(tool_list(&self.0)))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let arguments = request.arguments.unwrap_or_default();
        let result = match self.call(&request.name, arguments, &context).await {
            Ok(result) => result,
            Err(failure) => failed(&failure),
        };
        Ok(result.into())
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        let entries = self
            .0
            .recent(self.0.options.max_list)
            .await
            .map_err(|f| ErrorData::internal_error(f.message, None))?;
        let resources = entries
            .iter()
            .filter_map(|entry| {
                let location = entry.location()?;
                let name = location.rsplit('/').next().unwrap_or(&entry.id);
                Some(
                    Resource::new(resources::uri(&entry.id), name)
                        .with_mime_type(resources::mime_of(location))
                        .with_description(entry.request.prompt()),
                )
            })
            .collect();
        Ok(ListResourcesResult::with_all_items(resources))
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        Ok(ListResourceTemplatesResult::with_all_items(vec![
            ResourceTemplate::new(format!("{}{{id}}", resources::PREFIX), "stored image")
                .with_description("The image of a delivery, by its id (see list_images)."),
        ]))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        let cap = self.0.options.max_resource_bytes;
        match resources::read(&self.0, &request.uri, cap).await {
            Ok(image) => {
                use base64::Engine as _;
                let blob = base64::engine::general_purpose::STANDARD.encode(&image.bytes);
                let contents = ResourceContents::blob(blob, request.uri).with_mime_type(image.mime);
                Ok(ReadResourceResult::new(vec![contents]).into())
            }
            Err(failure) if failure.reason == FailureReason::NotFound.into() => Err(
                ErrorData::resource_not_found(failure.text(), Some(json!({"uri": request.uri}))),
            ),
            Err(failure) => Err(ErrorData::invalid_request(
                failure.text(),
                Some(json!({"uri": request.uri, "reason": failure.reason})),
            )),
        }
    }
}

/// Serves MCP on stdin and stdout until the client closes them.
pub async fn serve_stdio(handler: Handler) -> Result<(), McpError> {
    let running = handler
        .serve(rmcp::transport::stdio())
        .await
        .map_err(|e| McpError::Transport(e.to_string()))?;
    running
        .waiting()
        .await
        .map_err(|e| McpError::Transport(e.to_string()))?;
    Ok(())
}

/// Serves MCP over Streamable HTTP at `/mcp` on `listener` until `shutdown`
/// fires, under `http`'s limits and token (required on an address that is
/// not loopback). On loopback, rmcp's own check of the `Host` header stays
/// (loopback names only, against DNS rebinding); on another address the
/// token takes its place, so clients on other machines can use their name
/// for the server.
pub async fn serve_http(
    handler: Handler,
    listener: tokio::net::TcpListener,
    http: HttpOptions,
    shutdown: CancellationToken,
) -> Result<(), McpError> {
    let local = listener
        .local_addr()
        .map_err(|e| McpError::Transport(e.to_string()))?;
    if !local.ip().is_loopback() && http.token.is_none() {
        return Err(McpError::Unprotected(local));
    }
    let mut config =
        StreamableHttpServerConfig::default().with_cancellation_token(shutdown.child_token());
    if !local.ip().is_loopback() {
        // Reached by name from other machines: the token (required above)
        // is what keeps a page elsewhere out, as in the gallery; rmcp's
        // loopback-only Host check would refuse every remote client.
        config = config.disable_allowed_hosts();
    }
    let service: StreamableHttpService<Handler, LocalSessionManager> =
        StreamableHttpService::new(move || Ok(handler.clone()), Default::default(), config);
    let mut router = axum::Router::new().nest_service("/mcp", service);
    if let Some(token) = http.token {
        router = require_bearer(router, token, "uncensored mcp");
    }
    serve(listener, router, http.limits, async move {
        shutdown.cancelled_owned().await
    })
    .await;
    Ok(())
}
