"""Drives the real `ollama` and `openai` Python clients through ollama-tap.

    python3 tests/python/clients.py http://127.0.0.1:8000

The base URL is the agent's (or, for a dry run, the fake Ollama's). The script makes a fixed mix
of calls against the test suite's fake Ollama (tests/common/fake_ollama.rs), whose `[[tokens:N]]`
prompt directive fixes the reply length, so every token number is known in advance:

  ollama.Client(host=url)
     1  generate      llama3.2          non-stream  prompt 5 words, 7 tokens
     2  generate      llama3.2          stream      prompt 4 words, 9 tokens
     3  chat          qwen2.5:0.5b      non-stream  prompt 2 words, 4 tokens
     4  chat          qwen2.5:0.5b      stream      prompt 4 words, 6 tokens
     5  embed         nomic-embed-text              inputs of 3 + 2 words
     6  generate      no-such-model     non-stream  404, caught as ollama.ResponseError
  openai.OpenAI(base_url=url + "/v1", api_key="ollama")
     7  chat.completions  llama3.2      non-stream  prompt 3 words, 3 tokens
     8  chat.completions  qwen2.5:0.5b  stream + stream_options.include_usage: 2 words, 8 tokens
     9  chat.completions  llama3.2      stream, no include_usage: 3 words, 5 tokens, no usage
    10  completions       qwen2.5:0.5b  non-stream  prompt 2 words, 2 tokens
    11  embeddings        nomic-embed-text          input of 3 words

It prints ONE JSON object on stdout with what the clients observed, one entry per call:

  {"versions": {"python": .., "ollama": .., "openai": ..},
   "calls": [{"client": "ollama", "call": "generate", "stream": false,
              "model": "llama3.2",           # the model name the client sent
              "http": [["POST", "/api/generate", 200]],   # every HTTP exchange of the call
              "prompt_tokens": 5, "eval_tokens": 7,       # counts in the response, or null
              "completed": true,             # final object / finish_reason seen
              "chunks": 8}, ...]}            # stream chunks read (non-stream: 1)

`prompt_tokens`/`eval_tokens` are null when the response carries no count (the openai stream
without include_usage; the 404). Any unexpected exception ends the script with status 1 and a
message on stderr; a missing package, with status 3 and the pip command.
"""

import json
import platform
import sys
import traceback
from importlib.metadata import version

MISSING_PACKAGES = 3  # exit status when `ollama` or `openai` is not installed

try:
    import httpx
    import ollama
    import openai
except ImportError as e:
    print(f"clients.py: {e}; run `python3 -m pip install ollama openai`", file=sys.stderr)
    sys.exit(MISSING_PACKAGES)

TIMEOUT = 30.0


class Recorder:
    """Collects every HTTP exchange (method, path, status) made by the clients."""

    def __init__(self):
        self.exchanges = []

    def hook(self, response):
        self.exchanges.append([response.request.method, response.request.url.path, response.status_code])

    def since(self, start):
        return self.exchanges[start:]


def run_mix(url):
    rec = Recorder()
    hooks = {"response": [rec.hook]}
    # trust_env=False: no HTTP(S)_PROXY from the environment between the client and the agent.
    oc = ollama.Client(host=url, timeout=TIMEOUT, trust_env=False, event_hooks=hooks)
    ai = openai.OpenAI(
        base_url=url + "/v1",
        api_key="ollama",
        max_retries=0,  # one call = one HTTP request, so the agent's counts are exact
        http_client=httpx.Client(timeout=TIMEOUT, trust_env=False, event_hooks=hooks),
    )
    calls = []

    def call(client, name, model, stream, fn):
        """Runs fn() -> (prompt_tokens, eval_tokens, completed, chunks) and records the call."""
        start = len(rec.exchanges)
        prompt, evals, completed, chunks = fn()
        calls.append({
            "client": client, "call": name, "stream": stream, "model": model,
            "http": rec.since(start), "prompt_tokens": prompt, "eval_tokens": evals,
            "completed": completed, "chunks": chunks,
        })

    def user(text):
        return [{"role": "user", "content": text}]

    # ---- ollama-python ----
    def generate():
        r = oc.generate(model="llama3.2", prompt="why is the sky blue [[tokens:7]]", stream=False)
        return r.prompt_eval_count, r.eval_count, r.done, 1

    def ollama_stream(parts):
        chunks = list(parts)
        last = chunks[-1]
        return last.prompt_eval_count, last.eval_count, bool(last.done), len(chunks)

    def generate_stream():
        return ollama_stream(oc.generate(model="llama3.2", prompt="tell me a story [[tokens:9]]", stream=True))

    def chat():
        r = oc.chat(model="qwen2.5:0.5b", messages=user("hello there [[tokens:4]]"), stream=False)
        return r.prompt_eval_count, r.eval_count, r.done, 1

    def chat_stream():
        return ollama_stream(
            oc.chat(model="qwen2.5:0.5b", messages=user("count to three please [[tokens:6]]"), stream=True)
        )

    def embed():
        r = oc.embed(model="nomic-embed-text", input=["first text here", "second one"])
        assert len(r.embeddings) == 2, r
        return r.prompt_eval_count, None, True, 1

    def unknown_model():
        not_found(lambda: oc.generate(model="no-such-model", prompt="hello", stream=False))
        return None, None, False, 0

    call("ollama", "generate", "llama3.2", False, generate)
    call("ollama", "generate", "llama3.2", True, generate_stream)
    call("ollama", "chat", "qwen2.5:0.5b", False, chat)
    call("ollama", "chat", "qwen2.5:0.5b", True, chat_stream)
    call("ollama", "embed", "nomic-embed-text", False, embed)
    call("ollama", "generate", "no-such-model", False, unknown_model)

    # ---- openai ----
    def usage_of(u):
        return (u.prompt_tokens, u.completion_tokens) if u is not None else (None, None)

    def oai_chat():
        r = ai.chat.completions.create(model="llama3.2", messages=user("[[tokens:3]] one two three"))
        return (*usage_of(r.usage), r.choices[0].finish_reason is not None, 1)

    def oai_stream(**extra):
        def run():
            usage, finished, n = None, False, 0
            for chunk in ai.chat.completions.create(stream=True, **extra):
                n += 1
                usage = chunk.usage or usage
                finished = finished or any(c.finish_reason for c in chunk.choices)
            return (*usage_of(usage), finished, n)
        return run

    def oai_completion():
        r = ai.completions.create(model="qwen2.5:0.5b", prompt="complete this [[tokens:2]]")
        return (*usage_of(r.usage), r.choices[0].finish_reason is not None, 1)

    def oai_embeddings():
        r = ai.embeddings.create(model="nomic-embed-text", input="embed me please")
        assert len(r.data) == 1, r
        return r.usage.prompt_tokens, None, True, 1

    call("openai", "chat.completions", "llama3.2", False, oai_chat)
    call("openai", "chat.completions", "qwen2.5:0.5b", True, oai_stream(
        model="qwen2.5:0.5b", messages=user("a b [[tokens:8]]"),
        stream_options={"include_usage": True},
    ))
    call("openai", "chat.completions", "llama3.2", True, oai_stream(
        model="llama3.2", messages=user("x y z [[tokens:5]]"),
    ))
    call("openai", "completions", "qwen2.5:0.5b", False, oai_completion)
    call("openai", "embeddings", "nomic-embed-text", False, oai_embeddings)

    return {"versions": versions(), "calls": calls}


def not_found(fn):
    """Runs fn(), an ollama call that must fail with ollama.ResponseError 404."""
    try:
        fn()
    except ollama.ResponseError as e:
        if e.status_code != 404:
            raise
        return
    raise AssertionError("expected ollama.ResponseError 404, got an answer")


def versions():
    """The versions of Python and of the two clients, for the report."""
    return {
        "python": platform.python_version(),
        "ollama": version("ollama"),
        "openai": version("openai"),
    }


def main(run, script):
    """Runs `run(url)` on the agent URL given as the only argument and prints its report as one
    JSON object; any exception ends the script with status 1 and a message on stderr."""
    if len(sys.argv) != 2:
        sys.exit(f"usage: {script} <agent_base_url>   (e.g. http://127.0.0.1:8000)")
    try:
        report = run(sys.argv[1].rstrip("/"))
    except Exception as e:  # noqa: BLE001 - any surprise is a failure, reported clearly
        traceback.print_exc()
        sys.exit(f"{script}: unexpected {type(e).__name__}: {e}")
    print(json.dumps(report))


if __name__ == "__main__":
    main(run_mix, "clients.py")
