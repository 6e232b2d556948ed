"""An independent MCP client (the official Python SDK, `mcp` 2.x) driving
`uncensored mcp` over stdio or Streamable HTTP. One process does every check
of one transport and prints one JSON summary line; any failed check exits
non-zero with the reason. Run by tests/mcp.rs.

usage: mcp_client.py stdio SECRETS_JSON ERRLOG COMMAND [ARGS...]
       mcp_client.py http  SECRETS_JSON URL
"""

import base64
import hashlib
import json
import sys

import anyio
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client

TOOLS = {"generate_image", "submit_generation", "get_job", "list_images", "get_balance"}
SEEN = []  # every result and notification, as JSON, for the secrets check


def record(value):
    SEEN.append(value.model_dump_json() if hasattr(value, "model_dump_json") else json.dumps(value))
    return value


def check(condition, what):
    if not condition:
        raise AssertionError(what)


async def call(session, name, arguments, progress=None):
    return record(await session.call_tool(name, arguments, progress_callback=progress))


async def checks(session):
    summary = {}
    record(await session.initialize())

    # The tools, with the API's constraints in their schemas.
    tools = record(await session.list_tools()).tools
    check({t.name for t in tools} == TOOLS, f"tools: {[t.name for t in tools]}")
    generate = next(t for t in tools if t.name == "generate_image")
    width = generate.input_schema["properties"]["image_width"]
    check((width.get("minimum"), width.get("maximum"), width.get("multipleOf")) == (256, 2048, 8), f"image_width schema {width}")
    check(generate.input_schema["properties"]["prompt"].get("maxLength") == 2000, "prompt maxLength")
    check(all(t.output_schema for t in tools), "every tool has an output schema")

    # Generate, with progress and a thumbnail; the SDK validates the
    # structured content against the output schema.
    progress = []

    async def on_progress(value, total, message):
        record({"progress": value, "total": total, "message": message})
        progress.append(message)

    done = await call(session, "generate_image", {"prompt": "a lighthouse at dusk", "image_width": 512, "image_height": 384, "thumbnail": True}, on_progress)
    check(not done.is_error, f"generate_image failed: {done.content}")
    data = done.structured_content
    for key in ("id", "job_id", "location", "sha256", "uri", "model", "generation_time"):
        check(data.get(key) is not None, f"structured content lacks {key}: {data}")
    check(data["status"] == "stored" and (data["width"], data["height"]) == (512, 384), f"structured {data}")
    check(progress, "no progress notification while waiting")
    links = [c for c in done.content if c.type == "resource_link"]
    check(len(links) == 1 and str(links[0].uri) == data["uri"], f"resource_link {links}")
    thumbs = [c for c in done.content if c.type == "image"]
    check(len(thumbs) == 1 and thumbs[0].mime_type == "image/jpeg", "one JPEG thumbnail")
    thumb = base64.b64decode(thumbs[0].data)
    check(thumb[:2] == b"\xff\xd8" and len(thumb) < 32_000, f"thumbnail of {len(thumb)} bytes")
    plain = await call(session, "generate_image", {"prompt": "a quiet harbour"})
    check(not plain.is_error and not [c for c in plain.content if c.type == "image"], "no thumbnail unless asked")

    # The cost in the result, and the balance that paid it.
    cost = data.get("cost_nanos")
    check(isinstance(cost, int) and cost > 0 and data.get("cost", "").startswith("$"), f"cost {data}")
    check(plain.structured_content.get("cost_nanos") == cost, "the same request costs the same")
    balance = await call(session, "get_balance", {})
    check(not balance.is_error, f"get_balance failed: {balance.content}")
    money = balance.structured_content
    check(money["daily_spend_nanos"] >= 2 * cost, f"the spend counts both images: {money}")
    check(money["available_nanos"] == money["balance_nanos"] - money["held_nanos"], f"available {money}")
    check(money["balance"].startswith("$") and "available" in balance.content[0].text, f"balance text {balance.content}")
    odd = await call(session, "get_balance", {"unexpected": 1})
    check(odd.is_error and odd.structured_content["error"]["reason"] == "invalid_request", f"get_balance args {odd.structured_content}")

    # The stored image as a resource: its bytes are the stored ones.
    read = record(await session.read_resource(data["uri"]))
    blob = read.contents[0]
    check(blob.mime_type == "image/jpeg", f"resource MIME {blob.mime_type}")
    check(hashlib.sha256(base64.b64decode(blob.blob)).hexdigest() == data["sha256"], "resource bytes match the sha256")
    resources = record(await session.list_resources()).resources
    check(data["uri"] in {str(r.uri) for r in resources}, "the image is listed as a resource")

    # Over the resource cap: refused with a clear error, nothing sent.
    big = await call(session, "generate_image", {"prompt": "a very large harbour", "additional_settings": {"emulator_image_bytes": 9 * 1024 * 1024}})
    check(not big.is_error, f"large image: {big.content}")
    try:
        record(await session.read_resource(big.structured_content["uri"]))
        check(False, "an image over the cap was served")
    except Exception as error:  # the SDK raises MCPError
        check("cap" in str(error), f"over-cap error: {error}")

    # Bad input: a tool error naming the field, before any request.
    bad = await call(session, "generate_image", {"prompt": "bad-width-marker", "image_width": 1001})
    check(bad.is_error, "a width of 1001 was accepted")
    error = bad.structured_content["error"]
    check(error["field"] == "image_width" and error["reason"] == "invalid_request", f"error {error}")
    check("image_width" in bad.content[0].text and "hint:" in bad.content[0].text, bad.content[0].text)
    moderated = await call(session, "generate_image", {"prompt": "a forbidden-term at dusk"})
    check(moderated.is_error and moderated.structured_content["error"]["reason"] == "moderation", f"moderation {moderated.structured_content}")

    # Long jobs: submit returns at once; get_job reads the delivery, or the API.
    submitted = await call(session, "submit_generation", {"prompt": "a slow sunrise"})
    check(not submitted.is_error and submitted.structured_content["id"].startswith("mcp-"), f"submit {submitted.structured_content}")
    status = await call(session, "get_job", {"id": submitted.structured_content["id"]})
    check(status.structured_content["status"] in {"pending", "accepted", "generated", "stored"}, f"get_job {status.structured_content}")
    by_job = await call(session, "get_job", {"id": data["job_id"]})
    check(not by_job.is_error and by_job.structured_content["status"] == "completed", f"get_job by job id {by_job.structured_content}")
    unknown = await call(session, "get_job", {"id": "no-such-job"})
    check(unknown.is_error and unknown.structured_content["error"]["reason"] == "not_found", f"unknown job {unknown.structured_content}")

    # Cancel a long wait once the server reports it is waiting.
    waiting = anyio.Event()
    delivery = []

    async def on_wait(value, total, message):
        record({"progress": value, "total": total, "message": message})
        delivery.append(message.split()[1].rstrip(":"))
        waiting.set()

    async with anyio.create_task_group() as group:
        async def slow():
            await call(session, "generate_image", {"prompt": "a glacier, slowly", "additional_settings": {"emulator_generation_seconds": 100000}}, on_wait)
            raise AssertionError("the slow generation finished")

        group.start_soon(slow)
        await waiting.wait()
        group.cancel_scope.cancel()
    cancelled = await call(session, "get_job", {"id": delivery[0]})
    check(cancelled.structured_content["status"] == "pending", f"cancelled delivery {cancelled.structured_content}")

    # Still serving; the journal has every delivery but the refused one.
    listed = await call(session, "list_images", {"limit": 50})
    check(not listed.is_error, f"list_images {listed.content}")
    prompts = [i["prompt"] for i in listed.structured_content["images"]]
    check("a glacier, slowly" in prompts and "a lighthouse at dusk" in prompts, f"listed {prompts}")
    check("bad-width-marker" not in prompts, "the refused request reached the journal")
    one = await call(session, "list_images", {"limit": 1})
    check(len(one.structured_content["images"]) == 1, "limit")
    summary["charged"] = 5  # lighthouse, harbour, large, submitted, glacier (moderation is not charged)
    return summary


async def main():
    transport, secrets = sys.argv[1], json.loads(sys.argv[2])
    if transport == "stdio":
        errlog_path, command, args = sys.argv[3], sys.argv[4], sys.argv[5:]
        with open(errlog_path, "w") as errlog:
            params = StdioServerParameters(command=command, args=args, env=dict(secrets_env(secrets)))
            async with stdio_client(params, errlog=errlog) as (read, write):
                async with ClientSession(read, write) as session:
                    summary = await checks(session)
    else:
        async with streamable_http_client(sys.argv[3]) as (read, write):
            async with ClientSession(read, write) as session:
                summary = await checks(session)
    leaked = [s for s in secrets.values() if any(s in message for message in SEEN)]
    check(not leaked, "a secret appeared in an MCP message")
    summary["messages"] = len(SEEN)
    print(json.dumps(summary))


def secrets_env(secrets):
    return {name: value for name, value in secrets.items() if name.startswith("UNCENSORED_")}


anyio.run(main)
