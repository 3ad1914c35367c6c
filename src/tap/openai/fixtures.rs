//! Recorded-shape answers of Ollama's OpenAI and Anthropic compatibility endpoints (and of the
//! public OpenAI/Anthropic formats they follow), for the tests of any module.
//!
//! Streams are `text/event-stream` bodies exactly as written on the wire (`\n` line ends);
//! the rest are `application/json` bodies as Go's `json.Encoder` writes them (one trailing
//! newline). Go marshals the Responses API's stream events from maps, so their keys are
//! sorted; structs keep their field order.

// === /v1/chat/completions ===

/// `stream: true` with `stream_options.include_usage: true` (current format, v0.32.6+): a
/// role chunk, content chunks, a finish chunk, the `choices: []` usage chunk, `[DONE]`.
pub(crate) const CHAT_STREAM_USAGE: &str = concat!(
    r#"data: {"id":"chatcmpl-417","object":"chat.completion.chunk","created":1761499524,"model":"llama3.2","system_fingerprint":"fp_ollama","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}"#,
    "\n\n",
    r#"data: {"id":"chatcmpl-417","object":"chat.completion.chunk","created":1761499524,"model":"llama3.2","system_fingerprint":"fp_ollama","choices":[{"index":0,"delta":{"content":"Hello"},"finish_reason":null}]}"#,
    "\n\n",
    r#"data: {"id":"chatcmpl-417","object":"chat.completion.chunk","created":1761499524,"model":"llama3.2","system_fingerprint":"fp_ollama","choices":[{"index":0,"delta":{"content":"! How can I"},"finish_reason":null}]}"#,
    "\n\n",
    r#"data: {"id":"chatcmpl-417","object":"chat.completion.chunk","created":1761499525,"model":"llama3.2","system_fingerprint":"fp_ollama","choices":[{"index":0,"delta":{"content":" help you today?"},"finish_reason":null}]}"#,
    "\n\n",
    r#"data: {"id":"chatcmpl-417","object":"chat.completion.chunk","created":1761499525,"model":"llama3.2","system_fingerprint":"fp_ollama","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#,
    "\n\n",
    r#"data: {"id":"chatcmpl-417","object":"chat.completion.chunk","created":1761499525,"model":"llama3.2","system_fingerprint":"fp_ollama","choices":[],"usage":{"prompt_tokens":26,"completion_tokens":9,"total_tokens":35}}"#,
    "\n\n",
    "data: [DONE]\n\n",
);

/// `stream: true` without `include_usage`: no token counts at all.
pub(crate) const CHAT_STREAM: &str = concat!(
    r#"data: {"id":"chatcmpl-88","object":"chat.completion.chunk","created":1761499600,"model":"qwen2.5:0.5b","system_fingerprint":"fp_ollama","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}"#,
    "\n\n",
    r#"data: {"id":"chatcmpl-88","object":"chat.completion.chunk","created":1761499600,"model":"qwen2.5:0.5b","system_fingerprint":"fp_ollama","choices":[{"index":0,"delta":{"content":"The sky is blue because of Rayleigh"},"finish_reason":null}]}"#,
    "\n\n",
    r#"data: {"id":"chatcmpl-88","object":"chat.completion.chunk","created":1761499600,"model":"qwen2.5:0.5b","system_fingerprint":"fp_ollama","choices":[{"index":0,"delta":{"content":" scattering."},"finish_reason":null}]}"#,
    "\n\n",
    r#"data: {"id":"chatcmpl-88","object":"chat.completion.chunk","created":1761499601,"model":"qwen2.5:0.5b","system_fingerprint":"fp_ollama","choices":[{"index":0,"delta":{},"finish_reason":"length"}]}"#,
    "\n\n",
    "data: [DONE]\n\n",
);

/// Thinking (`reasoning`) then a tool call, in the pre-v0.32.6 shape (`role` in every delta),
/// with an OpenAI-style usage chunk that details cached prompt tokens.
pub(crate) const CHAT_STREAM_TOOLS: &str = concat!(
    r#"data: {"id":"chatcmpl-903","object":"chat.completion.chunk","created":1761499700,"model":"qwen3:8b","system_fingerprint":"fp_ollama","choices":[{"index":0,"delta":{"role":"assistant","content":"","reasoning":"The user wants the weather in Paris."},"finish_reason":null}]}"#,
    "\n\n",
    r#"data: {"id":"chatcmpl-903","object":"chat.completion.chunk","created":1761499700,"model":"qwen3:8b","system_fingerprint":"fp_ollama","choices":[{"index":0,"delta":{"role":"assistant","content":"","reasoning":" I should call get_weather."},"finish_reason":null}]}"#,
    "\n\n",
    r#"data: {"id":"chatcmpl-903","object":"chat.completion.chunk","created":1761499701,"model":"qwen3:8b","system_fingerprint":"fp_ollama","choices":[{"index":0,"delta":{"role":"assistant","content":"","tool_calls":[{"id":"call_k3j2h1g0","index":0,"type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}}]},"finish_reason":null}]}"#,
    "\n\n",
    r#"data: {"id":"chatcmpl-903","object":"chat.completion.chunk","created":1761499701,"model":"qwen3:8b","system_fingerprint":"fp_ollama","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":"tool_calls"}]}"#,
    "\n\n",
    r#"data: {"id":"chatcmpl-903","object":"chat.completion.chunk","created":1761499701,"model":"qwen3:8b","system_fingerprint":"fp_ollama","choices":[],"usage":{"prompt_tokens":88,"completion_tokens":31,"total_tokens":119,"prompt_tokens_details":{"cached_tokens":64},"completion_tokens_details":{"reasoning_tokens":12}}}"#,
    "\n\n",
    "data: [DONE]\n\n",
);

/// `stream: false` (ollama-api.md example C).
pub(crate) const CHAT_JSON: &str = concat!(
    r#"{"id":"chatcmpl-417","object":"chat.completion","created":1729000000,"model":"llama3.2","system_fingerprint":"fp_ollama","choices":[{"index":0,"message":{"role":"assistant","content":"Hello!"},"finish_reason":"stop"}],"usage":{"prompt_tokens":26,"completion_tokens":7,"total_tokens":33}}"#,
    "\n",
);

/// The backend failed after the first chunks: an OpenAI error event, and no `[DONE]`.
pub(crate) const CHAT_STREAM_ERROR: &str = concat!(
    r#"data: {"id":"chatcmpl-12","object":"chat.completion.chunk","created":1761499800,"model":"llama3.2","system_fingerprint":"fp_ollama","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}"#,
    "\n\n",
    r#"data: {"id":"chatcmpl-12","object":"chat.completion.chunk","created":1761499800,"model":"llama3.2","system_fingerprint":"fp_ollama","choices":[{"index":0,"delta":{"content":"Once upon"},"finish_reason":null}]}"#,
    "\n\n",
    r#"data: {"error":{"message":"an error was encountered while running the model","type":"api_error","param":null,"code":null}}"#,
    "\n\n",
);

/// A 404 on any `/v1` OpenAI endpoint (`application/json`).
pub(crate) const OPENAI_NOT_FOUND: &str = concat!(
    r#"{"error":{"message":"model \"nope\" not found, try pulling it first","type":"not_found_error","param":null,"code":null}}"#,
    "\n",
);

// === /v1/completions ===

/// With `include_usage`: every chunk carries a zero usage, then a `choices: []` chunk the real one.
pub(crate) const COMPLETIONS_STREAM_USAGE: &str = concat!(
    r#"data: {"id":"cmpl-219","object":"text_completion","created":1761499524,"choices":[{"text":"Why","index":0,"finish_reason":null}],"model":"llama3.2","system_fingerprint":"fp_ollama","usage":{"prompt_tokens":0,"completion_tokens":0,"total_tokens":0}}"#,
    "\n\n",
    r#"data: {"id":"cmpl-219","object":"text_completion","created":1761499524,"choices":[{"text":" did the","index":0,"finish_reason":null}],"model":"llama3.2","system_fingerprint":"fp_ollama","usage":{"prompt_tokens":0,"completion_tokens":0,"total_tokens":0}}"#,
    "\n\n",
    r#"data: {"id":"cmpl-219","object":"text_completion","created":1761499525,"choices":[{"text":" chicken","index":0,"finish_reason":null}],"model":"llama3.2","system_fingerprint":"fp_ollama","usage":{"prompt_tokens":0,"completion_tokens":0,"total_tokens":0}}"#,
    "\n\n",
    r#"data: {"id":"cmpl-219","object":"text_completion","created":1761499525,"choices":[{"text":"","index":0,"finish_reason":"stop"}],"model":"llama3.2","system_fingerprint":"fp_ollama","usage":{"prompt_tokens":0,"completion_tokens":0,"total_tokens":0}}"#,
    "\n\n",
    r#"data: {"id":"cmpl-219","object":"text_completion","created":1761499525,"choices":[],"model":"llama3.2","system_fingerprint":"fp_ollama","usage":{"prompt_tokens":30,"completion_tokens":12,"total_tokens":42}}"#,
    "\n\n",
    "data: [DONE]\n\n",
);

/// Without `include_usage`.
pub(crate) const COMPLETIONS_STREAM: &str = concat!(
    r#"data: {"id":"cmpl-7","object":"text_completion","created":1761499524,"choices":[{"text":"def","index":0,"finish_reason":null}],"model":"qwen2.5-coder:1.5b","system_fingerprint":"fp_ollama"}"#,
    "\n\n",
    r#"data: {"id":"cmpl-7","object":"text_completion","created":1761499524,"choices":[{"text":" fib(n):","index":0,"finish_reason":null}],"model":"qwen2.5-coder:1.5b","system_fingerprint":"fp_ollama"}"#,
    "\n\n",
    r#"data: {"id":"cmpl-7","object":"text_completion","created":1761499525,"choices":[{"text":"","index":0,"finish_reason":"stop"}],"model":"qwen2.5-coder:1.5b","system_fingerprint":"fp_ollama"}"#,
    "\n\n",
    "data: [DONE]\n\n",
);

/// `stream: false`, cut by `max_tokens`.
pub(crate) const COMPLETIONS_JSON: &str = concat!(
    r#"{"id":"cmpl-554","object":"text_completion","created":1761499524,"model":"llama3.2","system_fingerprint":"fp_ollama","choices":[{"text":"Why did the chicken cross the road? To get to","index":0,"finish_reason":"length"}],"usage":{"prompt_tokens":30,"completion_tokens":16,"total_tokens":46}}"#,
    "\n",
);

// === /v1/embeddings ===

pub(crate) const EMBEDDINGS_JSON: &str = concat!(
    r#"{"object":"list","data":[{"object":"embedding","embedding":[0.010071029,-0.0017594862,0.05007221,0.04692972],"index":0},{"object":"embedding","embedding":[-0.0098027075,0.06042469,0.025257962,-0.006364387],"index":1}],"model":"all-minilm","usage":{"prompt_tokens":8,"total_tokens":8}}"#,
    "\n",
);

/// A 400 from the embeddings middleware.
pub(crate) const EMBEDDINGS_BAD_REQUEST: &str = concat!(
    r#"{"error":{"message":"invalid input","type":"invalid_request_error","param":null,"code":null}}"#,
    "\n",
);

// === /v1/responses ===

/// Ollama's Responses stream: `event:` lines, sorted keys, the whole response in
/// `response.completed` with its usage.
pub(crate) const RESPONSES_STREAM: &str = concat!(
    "event: response.created\n",
    r#"data: {"response":{"background":false,"completed_at":null,"created_at":1761499524,"error":null,"frequency_penalty":0,"id":"resp_482913","incomplete_details":null,"instructions":null,"max_output_tokens":null,"max_tool_calls":null,"metadata":{},"model":"qwen3:0.6b","object":"response","output":[],"parallel_tool_calls":true,"presence_penalty":0,"previous_response_id":null,"prompt_cache_key":null,"reasoning":null,"safety_identifier":null,"service_tier":"default","status":"in_progress","store":false,"temperature":1,"text":{"format":{"type":"text"}},"tool_choice":"auto","tools":[],"top_logprobs":0,"top_p":1,"truncation":"disabled","usage":null},"sequence_number":0,"type":"response.created"}"#,
    "\n\n",
    "event: response.in_progress\n",
    r#"data: {"response":{"background":false,"completed_at":null,"created_at":1761499524,"error":null,"frequency_penalty":0,"id":"resp_482913","incomplete_details":null,"instructions":null,"max_output_tokens":null,"max_tool_calls":null,"metadata":{},"model":"qwen3:0.6b","object":"response","output":[],"parallel_tool_calls":true,"presence_penalty":0,"previous_response_id":null,"prompt_cache_key":null,"reasoning":null,"safety_identifier":null,"service_tier":"default","status":"in_progress","store":false,"temperature":1,"text":{"format":{"type":"text"}},"tool_choice":"auto","tools":[],"top_logprobs":0,"top_p":1,"truncation":"disabled","usage":null},"sequence_number":1,"type":"response.in_progress"}"#,
    "\n\n",
    "event: response.output_item.added\n",
    r#"data: {"item":{"content":[],"id":"msg_733591","role":"assistant","status":"in_progress","type":"message"},"output_index":0,"sequence_number":2,"type":"response.output_item.added"}"#,
    "\n\n",
    "event: response.content_part.added\n",
    r#"data: {"content_index":0,"item_id":"msg_733591","output_index":0,"part":{"annotations":[],"logprobs":[],"text":"","type":"output_text"},"sequence_number":3,"type":"response.content_part.added"}"#,
    "\n\n",
    "event: response.output_text.delta\n",
    r#"data: {"content_index":0,"delta":"Hi","item_id":"msg_733591","logprobs":[],"output_index":0,"sequence_number":4,"type":"response.output_text.delta"}"#,
    "\n\n",
    "event: response.output_text.delta\n",
    r#"data: {"content_index":0,"delta":" there","item_id":"msg_733591","logprobs":[],"output_index":0,"sequence_number":5,"type":"response.output_text.delta"}"#,
    "\n\n",
    "event: response.output_text.delta\n",
    r#"data: {"content_index":0,"delta":"!","item_id":"msg_733591","logprobs":[],"output_index":0,"sequence_number":6,"type":"response.output_text.delta"}"#,
    "\n\n",
    "event: response.output_text.done\n",
    r#"data: {"content_index":0,"item_id":"msg_733591","logprobs":[],"output_index":0,"sequence_number":7,"text":"Hi there!","type":"response.output_text.done"}"#,
    "\n\n",
    "event: response.content_part.done\n",
    r#"data: {"content_index":0,"item_id":"msg_733591","output_index":0,"part":{"annotations":[],"logprobs":[],"text":"Hi there!","type":"output_text"},"sequence_number":8,"type":"response.content_part.done"}"#,
    "\n\n",
    "event: response.output_item.done\n",
    r#"data: {"item":{"content":[{"annotations":[],"logprobs":[],"text":"Hi there!","type":"output_text"}],"id":"msg_733591","role":"assistant","status":"completed","type":"message"},"output_index":0,"sequence_number":9,"type":"response.output_item.done"}"#,
    "\n\n",
    "event: response.completed\n",
    r#"data: {"response":{"background":false,"completed_at":1761499526,"created_at":1761499524,"error":null,"frequency_penalty":0,"id":"resp_482913","incomplete_details":null,"instructions":null,"max_output_tokens":null,"max_tool_calls":null,"metadata":{},"model":"qwen3:0.6b","object":"response","output":[{"content":[{"annotations":[],"logprobs":[],"text":"Hi there!","type":"output_text"}],"id":"msg_733591","role":"assistant","status":"completed","type":"message"}],"parallel_tool_calls":true,"presence_penalty":0,"previous_response_id":null,"prompt_cache_key":null,"reasoning":null,"safety_identifier":null,"service_tier":"default","status":"completed","store":false,"temperature":1,"text":{"format":{"type":"text"}},"tool_choice":"auto","tools":[],"top_logprobs":0,"top_p":1,"truncation":"disabled","usage":{"input_tokens":14,"input_tokens_details":{"cached_tokens":0},"output_tokens":4,"output_tokens_details":{"reasoning_tokens":0},"total_tokens":18}},"sequence_number":10,"type":"response.completed"}"#,
    "\n\n",
);

/// OpenAI's shape of a stream cut by `max_output_tokens`: it ends with `response.incomplete`.
pub(crate) const RESPONSES_STREAM_INCOMPLETE: &str = concat!(
    "event: response.created\n",
    r#"data: {"type":"response.created","sequence_number":0,"response":{"id":"resp_67ccd7eca01881908ff0b5146584e408","object":"response","created_at":1741477868,"status":"in_progress","error":null,"incomplete_details":null,"max_output_tokens":16,"model":"gpt-oss:20b","output":[],"usage":null}}"#,
    "\n\n",
    "event: response.reasoning_summary_text.delta\n",
    r#"data: {"type":"response.reasoning_summary_text.delta","sequence_number":1,"item_id":"rs_1","output_index":0,"summary_index":0,"delta":"Counting"}"#,
    "\n\n",
    "event: response.incomplete\n",
    r#"data: {"type":"response.incomplete","sequence_number":2,"response":{"id":"resp_67ccd7eca01881908ff0b5146584e408","object":"response","created_at":1741477868,"status":"incomplete","error":null,"incomplete_details":{"reason":"max_output_tokens"},"max_output_tokens":16,"model":"gpt-oss:20b","output":[{"id":"rs_1","type":"reasoning","summary":[{"type":"summary_text","text":"Counting"}]}],"usage":{"input_tokens":21,"input_tokens_details":{"cached_tokens":16},"output_tokens":16,"output_tokens_details":{"reasoning_tokens":16},"total_tokens":37}}}"#,
    "\n\n",
);

/// `stream: false`: struct field order, reasoning and message output items.
pub(crate) const RESPONSES_JSON: &str = concat!(
    r#"{"id":"resp_104211","object":"response","created_at":1761499524,"completed_at":1761499526,"status":"completed","incomplete_details":null,"model":"qwen3:0.6b","previous_response_id":null,"instructions":null,"output":[{"id":"rs_resp_104211","type":"reasoning","summary":[{"type":"summary_text","text":"The user greets me."}],"encrypted_content":"The user greets me."},{"id":"msg_90210","type":"message","status":"completed","role":"assistant","content":[{"type":"output_text","text":"Hello! How can I help you today?","annotations":[],"logprobs":[]}]}],"error":null,"tools":[],"tool_choice":"auto","truncation":"disabled","parallel_tool_calls":true,"text":{"format":{"type":"text"}},"top_p":1,"presence_penalty":0,"frequency_penalty":0,"top_logprobs":0,"temperature":1,"reasoning":null,"usage":{"input_tokens":11,"output_tokens":23,"total_tokens":34,"input_tokens_details":{"cached_tokens":0},"output_tokens_details":{"reasoning_tokens":0}},"max_output_tokens":null,"max_tool_calls":null,"store":false,"background":false,"service_tier":"default","metadata":{},"safety_identifier":null,"prompt_cache_key":null}"#,
    "\n",
);

/// A stream that fails after some text: `response.failed` with the response's `error`.
pub(crate) const RESPONSES_STREAM_FAILED: &str = concat!(
    "event: response.created\n",
    r#"data: {"response":{"background":false,"completed_at":null,"created_at":1761499524,"error":null,"frequency_penalty":0,"id":"resp_5521","incomplete_details":null,"instructions":null,"max_output_tokens":null,"max_tool_calls":null,"metadata":{},"model":"llama3.2","object":"response","output":[],"parallel_tool_calls":true,"presence_penalty":0,"previous_response_id":null,"prompt_cache_key":null,"reasoning":null,"safety_identifier":null,"service_tier":"default","status":"in_progress","store":false,"temperature":1,"text":{"format":{"type":"text"}},"tool_choice":"auto","tools":[],"top_logprobs":0,"top_p":1,"truncation":"disabled","usage":null},"sequence_number":0,"type":"response.created"}"#,
    "\n\n",
    "event: response.output_text.delta\n",
    r#"data: {"content_index":0,"delta":"Once","item_id":"msg_77","logprobs":[],"output_index":0,"sequence_number":1,"type":"response.output_text.delta"}"#,
    "\n\n",
    "event: response.failed\n",
    r#"data: {"response":{"background":false,"completed_at":null,"created_at":1761499524,"error":{"code":"server_error","message":"an error was encountered while running the model"},"frequency_penalty":0,"id":"resp_5521","incomplete_details":null,"instructions":null,"max_output_tokens":null,"max_tool_calls":null,"metadata":{},"model":"llama3.2","object":"response","output":[],"parallel_tool_calls":true,"presence_penalty":0,"previous_response_id":null,"prompt_cache_key":null,"reasoning":null,"safety_identifier":null,"service_tier":"default","status":"failed","store":false,"temperature":1,"text":{"format":{"type":"text"}},"tool_choice":"auto","tools":[],"top_logprobs":0,"top_p":1,"truncation":"disabled","usage":null},"sequence_number":2,"type":"response.failed"}"#,
    "\n\n",
);

/// OpenAI's stream `error` event (no `error` member: the event's `type` says it).
pub(crate) const RESPONSES_STREAM_ERROR: &str = concat!(
    "event: response.created\n",
    r#"data: {"type":"response.created","sequence_number":0,"response":{"id":"resp_9","object":"response","created_at":1741477868,"status":"in_progress","error":null,"incomplete_details":null,"model":"llama3.2","output":[],"usage":null}}"#,
    "\n\n",
    "event: error\n",
    r#"data: {"type":"error","code":"ERR_SOMETHING","message":"Something went wrong","param":null,"sequence_number":1}"#,
    "\n\n",
);

// === /v1/messages (Anthropic) ===

/// Ollama's Anthropic stream: `message_start` carries an estimate of the input tokens,
/// `message_delta` the real input and output counts.
pub(crate) const MESSAGES_STREAM: &str = concat!(
    "event: message_start\n",
    r#"data: {"type":"message_start","message":{"id":"msg_6f1c0d9e2b7a4c3d5e8f9a0b","type":"message","role":"assistant","model":"llama3.2","content":[],"usage":{"input_tokens":9,"output_tokens":0}}}"#,
    "\n\n",
    "event: content_block_start\n",
    r#"data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
    "\n\n",
    "event: ping\n",
    r#"data: {"type":"ping"}"#,
    "\n\n",
    "event: content_block_delta\n",
    r#"data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello"}}"#,
    "\n\n",
    "event: content_block_delta\n",
    r#"data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"! How can"}}"#,
    "\n\n",
    "event: content_block_delta\n",
    r#"data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" I help?"}}"#,
    "\n\n",
    "event: content_block_stop\n",
    r#"data: {"type":"content_block_stop","index":0}"#,
    "\n\n",
    "event: message_delta\n",
    r#"data: {"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"input_tokens":31,"output_tokens":8}}"#,
    "\n\n",
    "event: message_stop\n",
    r#"data: {"type":"message_stop"}"#,
    "\n\n",
);

/// Anthropic's own shape: cache read in `message_start`, thinking, a tool call streamed as
/// `partial_json`, and a `message_delta` that carries only the output tokens.
pub(crate) const MESSAGES_STREAM_TOOL_USE: &str = concat!(
    "event: message_start\n",
    r#"data: {"type":"message_start","message":{"id":"msg_01XFDUDYJgAACzvnptvVoYEL","type":"message","role":"assistant","content":[],"model":"claude-sonnet-4-5","stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":472,"cache_creation_input_tokens":0,"cache_read_input_tokens":384,"output_tokens":2}}}"#,
    "\n\n",
    "event: content_block_start\n",
    r#"data: {"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":"","signature":""}}"#,
    "\n\n",
    "event: ping\n",
    r#"data: {"type": "ping"}"#,
    "\n\n",
    "event: content_block_delta\n",
    r#"data: {"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"The user wants the weather."}}"#,
    "\n\n",
    "event: content_block_delta\n",
    r#"data: {"type":"content_block_delta","index":0,"delta":{"type":"signature_delta","signature":"EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds"}}"#,
    "\n\n",
    "event: content_block_stop\n",
    r#"data: {"type":"content_block_stop","index":0}"#,
    "\n\n",
    "event: content_block_start\n",
    r#"data: {"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_01T1x1fJ34qAmk2tNTrN7Up6","name":"get_weather","input":{}}}"#,
    "\n\n",
    "event: content_block_delta\n",
    r#"data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":""}}"#,
    "\n\n",
    "event: content_block_delta\n",
    r#"data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"location\": \"San Fra"}}"#,
    "\n\n",
    "event: content_block_delta\n",
    r#"data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"ncisco, CA\"}"}}"#,
    "\n\n",
    "event: content_block_stop\n",
    r#"data: {"type":"content_block_stop","index":1}"#,
    "\n\n",
    "event: message_delta\n",
    r#"data: {"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":89}}"#,
    "\n\n",
    "event: message_stop\n",
    r#"data: {"type":"message_stop"}"#,
    "\n\n",
);

/// `stream: false`.
pub(crate) const MESSAGES_JSON: &str = concat!(
    r#"{"id":"msg_2b7e0c4f9a1d3e5f7a9b1c3d","type":"message","role":"assistant","model":"llama3.2","content":[{"type":"text","text":"Hello! How can I help you today?"}],"stop_reason":"end_turn","usage":{"input_tokens":14,"output_tokens":10}}"#,
    "\n",
);

/// The backend failed mid-stream: an Anthropic `error` event, no `message_stop`.
pub(crate) const MESSAGES_STREAM_ERROR: &str = concat!(
    "event: message_start\n",
    r#"data: {"type":"message_start","message":{"id":"msg_0a1b2c3d4e5f6a7b8c9d0e1f","type":"message","role":"assistant","model":"llama3.2","content":[],"usage":{"input_tokens":12,"output_tokens":0}}}"#,
    "\n\n",
    "event: content_block_start\n",
    r#"data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
    "\n\n",
    "event: content_block_delta\n",
    r#"data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Once"}}"#,
    "\n\n",
    "event: error\n",
    r#"data: {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
    "\n\n",
);

/// A 404 from the Anthropic middleware (`application/json`).
pub(crate) const MESSAGES_NOT_FOUND: &str = concat!(
    r#"{"type":"error","error":{"type":"not_found_error","message":"model 'nope' not found"},"request_id":"req_8d3f2a1b0c9e7d6f5a4b3c2d"}"#,
    "\n",
);
