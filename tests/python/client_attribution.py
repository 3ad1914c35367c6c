"""Drives the real `ollama` and `openai` Python clients through ollama-tap, each call naming
its client a different way, for tests/metering/clients.rs.

    python3 tests/python/client_attribution.py http://127.0.0.1:8000

The agent is configured with client_headers = ["X-OpenWebUI-User-Email", "X-User"],
client_from_body = true and client_from_api_key = true. Each call states the client label it
should be counted under, by the precedence of docs/metrics.md (the first configured header present,
then the body's `user`, then "key-" + 12 hex digits of the SHA-256 of the API key, computed
here with hashlib), or "unknown":

  ollama.Client(headers={"X-OpenWebUI-User-Email": "alice@example.com"})
     1  generate   llama3.2          non-stream  -> alice@example.com
     2  chat       qwen2.5:0.5b      stream      -> alice@example.com
     3  embed      nomic-embed-text              -> alice@example.com
  ollama.Client(headers={"X-User": "bob"})
     4  generate   llama3.2          stream      -> bob
     5  generate   no-such-model     404         -> bob (model "other")
  ollama.Client(headers={"X-User": "bob", "X-OpenWebUI-User-Email": "alice@example.com"})
     6  chat       llama3.2          non-stream  -> alice@example.com (the first configured wins)
  ollama.Client(headers={"Authorization": "Bearer sk-carol-secret"})
     7  generate   llama3.2          non-stream  -> key-<sha256("sk-carol-secret")>
  ollama.Client()
     8  generate   llama3.2          non-stream  -> unknown
  openai.OpenAI(api_key="sk-carol-secret")
     9  chat.completions  llama3.2      user="dave"          -> dave (the body beats the key)
    10  chat.completions  qwen2.5:0.5b  stream, include_usage, no user -> key-<sha256>
    11  completions       qwen2.5:0.5b  user="dave"          -> dave
    12  embeddings        nomic-embed-text user="dave"       -> dave
  openai.OpenAI(api_key="sk-carol-secret", default_headers={"X-User": "erin"})
    13  chat.completions  llama3.2      user="dave"          -> erin (the header beats the body)
  openai.OpenAI(api_key="ollama")
    14  chat.completions  llama3.2      no user              -> key-<sha256("ollama")>

It prints ONE JSON object: {"versions": {...}, "secrets": [the API keys sent], "calls": [{"client":
"ollama", "call": "generate", "model": "llama3.2", "expect": "alice@example.com", "http":
[["POST", "/api/generate", 200]], "prompt_tokens": 5, "eval_tokens": 7, "completed": true},
...]}. Exit status 1 on any surprise (clients.py's `main`), 3 when a package is missing (its import).
"""

import hashlib

# clients.py exits with status 3 and the pip command when a package is missing
from clients import TIMEOUT, Recorder, main, not_found, versions

import httpx
import ollama
import openai

ALICE = "alice@example.com"
CAROL_KEY = "sk-carol-secret"


def key_label(token):
    return "key-" + hashlib.sha256(token.encode()).hexdigest()[:12]


def run(url):
    rec = Recorder()

    def http():
        # trust_env=False: no HTTP(S)_PROXY from the environment between the client and the agent.
        return {"timeout": TIMEOUT, "trust_env": False, "event_hooks": {"response": [rec.hook]}}

    def oc(headers=None):
        return ollama.Client(host=url, headers=headers, **http())

    def ai(api_key, headers=None):
        return openai.OpenAI(
            base_url=url + "/v1", api_key=api_key, default_headers=headers,
            max_retries=0,  # one call = one HTTP request
            http_client=httpx.Client(**http()),
        )

    calls = []

    def call(client, name, model, expect, fn):
        start = len(rec.exchanges)
        prompt, evals, completed = fn()
        calls.append({
            "client": client, "call": name, "model": model, "expect": expect,
            "http": rec.since(start), "prompt_tokens": prompt, "eval_tokens": evals,
            "completed": completed,
        })

    def user(text):
        return [{"role": "user", "content": text}]

    # ---- ollama-python ----
    def generate(c, model, prompt):
        def run():
            r = c.generate(model=model, prompt=prompt, stream=False)
            return r.prompt_eval_count, r.eval_count, r.done
        return run

    def last_of(parts):
        last = list(parts)[-1]
        return last.prompt_eval_count, last.eval_count, bool(last.done)

    alice, bob, both = oc({"X-OpenWebUI-User-Email": ALICE}), oc({"X-User": "bob"}), oc(
        {"X-User": "bob", "X-OpenWebUI-User-Email": ALICE})

    def embed():
        r = alice.embed(model="nomic-embed-text", input=["first text here", "second one"])
        return r.prompt_eval_count, None, True

    def unknown_model():
        not_found(lambda: bob.generate(model="no-such-model", prompt="hello", stream=False))
        return None, None, False

    def chat(c, model, text):
        def run():
            r = c.chat(model=model, messages=user(text), stream=False)
            return r.prompt_eval_count, r.eval_count, r.done
        return run

    call("ollama", "generate", "llama3.2", ALICE, generate(alice, "llama3.2", "why is the sky blue [[tokens:7]]"))
    call("ollama", "chat", "qwen2.5:0.5b", ALICE, lambda: last_of(
        alice.chat(model="qwen2.5:0.5b", messages=user("count to three please [[tokens:4]]"), stream=True)))
    call("ollama", "embed", "nomic-embed-text", ALICE, embed)
    call("ollama", "generate", "llama3.2", "bob", lambda: last_of(
        bob.generate(model="llama3.2", prompt="tell me a story [[tokens:5]]", stream=True)))
    call("ollama", "generate", "no-such-model", "bob", unknown_model)
    call("ollama", "chat", "llama3.2", ALICE, chat(both, "llama3.2", "hello there [[tokens:3]]"))
    call("ollama", "generate", "llama3.2", key_label(CAROL_KEY),
         generate(oc({"Authorization": f"Bearer {CAROL_KEY}"}), "llama3.2", "a b c [[tokens:2]]"))
    call("ollama", "generate", "llama3.2", "unknown", generate(oc(), "llama3.2", "nobody [[tokens:6]]"))

    # ---- openai ----
    def usage_of(u):
        return (u.prompt_tokens, u.completion_tokens) if u is not None else (None, None)

    def oai_chat(c, model, text, **extra):
        def run():
            r = c.chat.completions.create(model=model, messages=user(text), **extra)
            return (*usage_of(r.usage), r.choices[0].finish_reason is not None)
        return run

    carol, erin = ai(CAROL_KEY), ai(CAROL_KEY, {"X-User": "erin"})

    def oai_stream():
        usage, finished = None, False
        for chunk in carol.chat.completions.create(
            model="qwen2.5:0.5b", messages=user("a b [[tokens:8]]"), stream=True,
            stream_options={"include_usage": True},
        ):
            usage = chunk.usage or usage
            finished = finished or any(c.finish_reason for c in chunk.choices)
        return (*usage_of(usage), finished)

    def oai_completion():
        r = carol.completions.create(model="qwen2.5:0.5b", prompt="complete this [[tokens:2]]", user="dave")
        return (*usage_of(r.usage), r.choices[0].finish_reason is not None)

    def oai_embeddings():
        r = carol.embeddings.create(model="nomic-embed-text", input="embed me please", user="dave")
        return r.usage.prompt_tokens, None, True

    call("openai", "chat.completions", "llama3.2", "dave",
         oai_chat(carol, "llama3.2", "[[tokens:3]] one two three", user="dave"))
    call("openai", "chat.completions", "qwen2.5:0.5b", key_label(CAROL_KEY), oai_stream)
    call("openai", "completions", "qwen2.5:0.5b", "dave", oai_completion)
    call("openai", "embeddings", "nomic-embed-text", "dave", oai_embeddings)
    call("openai", "chat.completions", "llama3.2", "erin",
         oai_chat(erin, "llama3.2", "x y [[tokens:4]]", user="dave"))
    call("openai", "chat.completions", "llama3.2", key_label("ollama"),
         oai_chat(ai("ollama"), "llama3.2", "p q r [[tokens:5]]"))

    return {"versions": versions(), "secrets": [CAROL_KEY], "calls": calls}


if __name__ == "__main__":
    main(run, "client_attribution.py")
