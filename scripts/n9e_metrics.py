#!/usr/bin/env python3
"""Nightingale's built-in metric descriptions for ollama-tap (integrations/Ollama/metrics/),
one per exported family, in Chinese and English, as n9e shows them beside a query.

    python3 scripts/n9e_metrics.py           # writes integrations/Ollama/metrics/ollama-tap.json
    python3 scripts/n9e_metrics.py --check   # exit 1 if the committed JSON is not what it would write

tests/docs_and_boards/nightingale.rs checks that every family in README's metric tables is described here. The
queries are written with agent_hostname and stored with ident, as n9e names the host
(n9e_names.for_nightingale).
"""
import json
import sys
from pathlib import Path

from n9e_names import for_nightingale

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "integrations" / "Ollama" / "metrics" / "ollama-tap.json"
UUID_BASE = 1764633700000000
BY = "agent_hostname, model"


def rate(name):
    return f"sum by ({BY}) (rate({name}[5m]))"


def p95(name):
    return f"histogram_quantile(0.95, sum by ({BY}, le) (rate({name}_bucket[5m])))"


# (typ, expression, unit, zh name, zh note, en name, en note)
METRICS = [
    ("Requests", rate("ollama_requests_total"), "requests/s", "请求速率", "每个模型每秒经过代理的推理请求数（所有端点）。", "Request rate", "Metered inference requests per second per model, every endpoint."),
    ("Requests", rate("ollama_requests_success"), "requests/s", "成功请求速率", "每秒成功的请求数：2xx 且回答完整结束（done: true、data: [DONE] 等）。", "Successful requests", "Requests per second that got a 2xx answer which ended complete."),
    ("Requests", rate("ollama_requests_failed"), "requests/s", "失败请求速率", "每秒失败的请求数：4xx/5xx、流中的错误对象、流被截断、后端不可达或超时。", "Failed requests", "Requests per second that failed: 4xx/5xx, an error inside a stream, a cut stream, backend unreachable or too slow."),
    ("Requests", "sum by (agent_hostname, model, endpoint, outcome) (rate(ollama_endpoint_requests_total[5m]))", "requests/s", "按端点和结果的请求速率", "按端点和结果（HTTP 状态码、stream_error、client_aborted、backend_unreachable、timeout）统计的请求速率。", "Requests by endpoint and outcome", "Request rate by endpoint and outcome (HTTP status, stream_error, client_aborted, backend_unreachable, timeout)."),
    ("Requests", "sum by (agent_hostname, model) (ollama_requests_in_flight)", "requests", "进行中的请求", "当前正在回答的请求数。", "Requests in flight", "Requests being answered now."),
    ("Requests", "sum by (agent_hostname, model, reason) (rate(ollama_finish_reason_total[5m]))", "requests/s", "结束原因", "生成停止的原因：stop、length（被截断）、tool_calls、content_filter、load、unload。", "Finish reasons", "Why generation stopped: stop, length (truncated), tool_calls, content_filter, load, unload."),
    ("Tokens", rate("ollama_tokens_generated_total"), "tokens/s", "生成 token 速率", "成功回答的输出 token 数（eval_count / completion_tokens / output_tokens）每秒。", "Generated tokens", "Output tokens of successful answers per second (eval_count, completion_tokens, output_tokens)."),
    ("Tokens", rate("ollama_prompt_tokens_total"), "tokens/s", "提示 token 速率", "成功回答的输入 token 数（prompt_eval_count / prompt_tokens / input_tokens）每秒。", "Prompt tokens", "Input tokens of successful answers per second (prompt_eval_count, prompt_tokens, input_tokens)."),
    ("Tokens", rate("ollama_prompt_cached_tokens_total"), "tokens/s", "缓存命中的提示 token", "由缓存提供的提示 token 数每秒（后端报告时）。", "Cached prompt tokens", "Prompt tokens served from cache per second, when the backend reports them."),
    ("Latency", p95("ollama_request_duration_seconds"), "seconds", "请求耗时 P95", "代理测得的从请求到达到最后一个字节的耗时（含失败请求），直方图 P95，可跨主机聚合。", "Request duration P95", "Arrival to last byte as the agent measures it, failures included; P95 from the histogram, aggregatable across hosts."),
    ("Latency", p95("ollama_queue_wait_seconds"), "seconds", "排队等待 P95", "请求在 Ollama 内等待并行槽位（OLLAMA_NUM_PARALLEL）的时间：total_duration − load_duration − prompt_eval_duration − eval_duration，直方图 P95。持续升高说明请求在排队。", "Queue wait P95", "Time a request waited inside Ollama for a parallel slot (OLLAMA_NUM_PARALLEL): total_duration - load_duration - prompt_eval_duration - eval_duration; P95 from the histogram. Rising means requests are queuing."),
    ("Latency", p95("ollama_time_to_first_token_seconds"), "seconds", "首 token 时间 P95", "从请求到达到第一个带内容的数据块的时间（成功的流式请求）。", "Time to first token P95", "Arrival to the first chunk carrying content (successful streams)."),
    ("Latency", p95("ollama_time_per_output_token_seconds"), "seconds", "每个输出 token 的时间 P95", "(耗时 − 首 token 时间) / (token 数 − 1)，至少 2 个 token 的成功流式请求。", "Time per output token P95", "(duration − TTFT) / (tokens − 1), successful streams with at least 2 tokens."),
    ("Latency", p95("ollama_prompt_eval_duration_seconds"), "seconds", "提示处理耗时 P95", "后端报告的 prompt_eval_duration（原生端点）。", "Prompt evaluation P95", "The backend's prompt_eval_duration (native endpoints)."),
    ("Latency", p95("ollama_load_duration_seconds"), "seconds", "模型加载耗时 P95", "后端报告的 load_duration（原生端点）。", "Model load P95", "The backend's load_duration (native endpoints)."),
    ("Latency", p95("ollama_generation_tokens_per_second"), "tokens/s", "生成速度 P95", "eval_count / eval_duration，每秒生成的 token 数（原生端点）。", "Generation speed P95", "eval_count / eval_duration, tokens generated per second (native endpoints)."),
    ("Latency", 'ollama_response_duration_seconds{quantile="0.95"}', "seconds", "响应耗时（原插件摘要）", "原 Categraf 插件的摘要：最近 1000 次成功请求的耗时分位数，单主机内有效，不可聚合。", "Response duration (original summary)", "The original Categraf plugin's summary: quantiles over the last 1000 successful requests of one host; not aggregatable."),
    ("Latency", 'ollama_model_load_duration_seconds{quantile="0.95"}', "seconds", "模型加载耗时（原插件摘要）", "原插件的摘要：后端报告的 load_duration 的分位数。", "Model load duration (original summary)", "The original plugin's summary of the backend's load_duration."),
    ("Backend", "ollama_up", "none", "Ollama 是否可用", "上一次检查 /api/version 成功时为 1（passive = true 时取自最近一次代理的请求）。", "Ollama up", "1 when Ollama's /api/version answered the last check (with passive = true, whether the last proxied request reached it)."),
    ("Backend", "ollama_backend_info", "none", "Ollama 版本", "值为 1，version 标签是后端的版本。", "Ollama version", "1, with the backend's version in the version label."),
    ("Backend", "ollama_loaded_model_size_bytes", "bytes", "已加载模型大小", "每个已加载模型的大小（/api/ps）。", "Loaded model size", "Size of each loaded model (/api/ps)."),
    ("Backend", "ollama_loaded_model_vram_bytes", "bytes", "已加载模型显存", "已加载模型占用显存的部分（size_vram）。", "Loaded model VRAM", "The part of each loaded model in VRAM (size_vram)."),
    ("Backend", "ollama_loaded_model_context_length", "none", "已加载模型上下文长度", "已加载模型的上下文长度。", "Loaded model context length", "The context length of each loaded model."),
    ("GenAI", "sum by (agent_hostname, gen_ai_request_model) (rate(gen_ai_client_operation_duration_seconds_count[5m]))", "requests/s", "GenAI 操作速率", "OpenTelemetry GenAI 名称（otel_semconv = true）：每个模型每秒的操作数，失败的带 error_type。", "GenAI operation rate", "OpenTelemetry GenAI names (otel_semconv = true): operations per second per model; failed ones carry error_type."),
    ("GenAI", "sum by (agent_hostname, gen_ai_request_model, gen_ai_token_type) (rate(gen_ai_client_token_usage_sum[5m]))", "tokens/s", "GenAI token 用量", "OpenTelemetry GenAI 名称：每秒输入（input）和输出（output）token 数。", "GenAI token usage", "OpenTelemetry GenAI names: input and output tokens per second."),
    ("GenAI", "histogram_quantile(0.95, sum by (agent_hostname, gen_ai_request_model, le) (rate(gen_ai_server_time_to_first_token_seconds_bucket[5m])))", "seconds", "GenAI 首 token 时间 P95", "OpenTelemetry GenAI 名称：成功流式请求的首 token 时间 P95。", "GenAI time to first token P95", "OpenTelemetry GenAI names: time to first token of successful streams, P95."),
    ("GenAI", "histogram_quantile(0.95, sum by (agent_hostname, gen_ai_request_model, le) (rate(gen_ai_server_time_per_output_token_seconds_bucket[5m])))", "seconds", "GenAI 每 token 时间 P95", "OpenTelemetry GenAI 名称：首个之后每个输出 token 的时间 P95。", "GenAI time per output token P95", "OpenTelemetry GenAI names: time per output token after the first, P95."),
    ("Agent", "histogram_quantile(0.99, sum by (agent_hostname, le) (rate(ollama_tap_proxy_overhead_seconds_bucket[5m])))", "seconds", "代理自身开销 P99", "转发前代理自身的工作时间（含等待请求体开头以得到 model）。", "Proxy overhead P99", "The agent's own work before forwarding (including the wait for the start of the body to learn the model)."),
    ("Push", "sum by (agent_hostname, url) (rate(ollama_tap_remote_write_samples_sent_total[5m]))", "samples/s", "推送成功样本", "接收端接受的样本数每秒。", "Samples sent", "Samples accepted by the receiver per second."),
    ("Push", "sum by (agent_hostname, url) (increase(ollama_tap_remote_write_samples_failed_total[1h]))", "samples", "推送失败样本", "因不可重试的 4xx 被丢弃的样本数。", "Samples failed", "Samples dropped after a non-retryable 4xx."),
    ("Push", "sum by (agent_hostname, url, reason) (increase(ollama_tap_remote_write_samples_dropped_total[1h]))", "samples", "未能发送而丢弃的样本", "按原因统计未能发送就被丢弃的样本数：queue_full（内存队列已满）、disk_full（磁盘队列超过 queue_max_mb）、too_old（超过 queue_max_age）、corrupt（队列文件损坏）、write_error（无法写入磁盘）。", "Samples dropped", "Samples dropped before they could be sent, by reason: queue_full (memory queue full), disk_full (disk queue over queue_max_mb), too_old (older than queue_max_age), corrupt (damaged queue file), write_error (could not write to disk)."),
    ("Push", "sum by (agent_hostname, url) (rate(ollama_tap_remote_write_retries_total[5m]))", "requests/s", "推送重试", "重试的推送请求数每秒。", "Push retries", "Push requests retried per second."),
    ("Push", "ollama_tap_remote_write_queue_samples", "samples", "待推送样本", "等待推送的样本数。", "Queued samples", "Samples waiting to be pushed."),
    ("Push", "ollama_tap_remote_write_queue_bytes", "bytes", "磁盘队列大小", "配置了 queue_dir 的写入端在磁盘上排队的字节数。", "Disk queue size", "Bytes of a writer's queue on disk (writers with a queue_dir)."),
    ("Agent", "ollama_tap_config_last_reload_successful", "none", "上次重载是否成功", "上次重载配置（SIGHUP）成功为 1；被拒绝为 0，此时仍使用原配置。", "Last reload successful", "1 when the last configuration reload (SIGHUP) took, 0 when it was refused and the configuration before it stays in force."),
    ("Agent", "time() - ollama_tap_config_last_reload_success_timestamp_seconds", "seconds", "距上次成功加载配置", "距离启动或上次成功重载配置的秒数。", "Seconds since the last good reload", "Seconds since the start or the last configuration reload that took."),
    ("Push", "ollama_tap_remote_write_seconds_since_last_success", "seconds", "距上次推送成功", "距离接收端上一次接受推送的秒数（首次成功前从启动算起）。", "Seconds since last push", "Seconds since the receiver last accepted a push (since start before the first)."),
    ("Push", "histogram_quantile(0.95, sum by (agent_hostname, url, le) (rate(ollama_tap_remote_write_request_duration_seconds_bucket[5m])))", "seconds", "推送请求耗时 P95", "每次推送请求的耗时（含失败）。", "Push request duration P95", "Duration of each push request, failures included."),
    # Per-client attribution (only exported when an instance sets client_headers, client_from_body or client_from_api_key)
    ("Clients", "sum by (agent_hostname, client, model) (rate(ollama_client_requests_total[5m]))", "requests/s", "按客户端的请求速率", "每个客户端和模型每秒的请求数（含失败）。客户端取自配置的请求头、请求体的 user 字段或 API 密钥的哈希；unknown：请求未标明客户端；other：超过 max_clients 之后的新客户端。", "Requests by client", "Requests per second per client and model, failures included. The client is the configured header, else the body's user field, else a hash of the API key; unknown: the request named none; other: new clients past max_clients."),
    ("Clients", "sum by (agent_hostname, client, model) (rate(ollama_client_prompt_tokens_total[5m]))", "tokens/s", "按客户端的提示 token 速率", "每个客户端和模型成功请求的输入 token 数每秒。", "Prompt tokens by client", "Input tokens of successful requests per second per client and model."),
    ("Clients", "sum by (agent_hostname, client, model) (rate(ollama_client_generated_tokens_total[5m]))", "tokens/s", "按客户端的生成 token 速率", "每个客户端和模型成功请求的输出 token 数每秒。", "Generated tokens by client", "Output tokens of successful requests per second per client and model."),
    ("Clients", "topk(10, sum by (agent_hostname, client) (rate(ollama_client_request_duration_seconds_total[5m])))", "seconds/s", "按客户端的 GPU 占用时间（前 10）", "每个客户端的请求耗时之和每秒（代理测得，含失败，不含仅加载模型的请求）：各客户端占用后端的份额。", "GPU time by client (top 10)", "Summed request duration per second per client, as the agent measures it (failures included, load-only requests excluded): the share of the backend each client held."),
    # Client connections (appended: the ids and uuids above stay as they were)
    ("Agent", "sum by (agent_hostname, listener) (ollama_tap_connections)", "connections", "客户端连接数", "实例监听端口上当前打开的客户端连接数（listener：proxy 为代理端口，metrics 为 metrics_listen_addr）。", "Client connections", "Client connections open now on the instance's listeners (listener: proxy for the proxy port, metrics for metrics_listen_addr)."),
    ("Agent", "sum by (agent_hostname, listener) (increase(ollama_tap_connections_refused_total[1h]))", "connections", "被拒绝的连接", "因已达到 max_connections 而以 503 应答并立即关闭的连接数。", "Connections refused", "Connections answered 503 and closed at once because max_connections were open."),
]


def metrics():
    out = []
    for i, (typ, expr, unit, zh_name, zh_note, en_name, en_note) in enumerate(METRICS):
        out.append({
            "id": i + 1,
            "uuid": UUID_BASE + i + 1,
            "collector": "ollama-tap",
            "typ": typ,
            "name": zh_name,
            "unit": unit,
            "note": zh_note,
            "lang": "zh_CN",
            "expression": for_nightingale(expr),
            "expression_type": "metric_name",
            "metric_type": "",
            "translation": [
                {"lang": "zh_CN", "name": zh_name, "note": zh_note},
                {"lang": "en_US", "name": en_name, "note": en_note},
            ],
            "created_at": 0,
            "created_by": "",
            "updated_at": 0,
            "updated_by": "",
        })
    return out


def main():
    text = json.dumps(metrics(), ensure_ascii=False, indent=4) + "\n"
    if sys.argv[1:] == ["--check"]:
        if not OUT.exists() or OUT.read_text() != text:
            print(f"{OUT.relative_to(ROOT)} is not what scripts/n9e_metrics.py writes: run it",
                  file=sys.stderr)
            sys.exit(1)
        return
    OUT.write_text(text)


if __name__ == "__main__":
    main()
