"""The LLM router's parts (private to procs.llm.service, which re-exports the public face).

types (LLMRequest/LLMResponse + codecs), errors, config, llama_cpp and anthropic_api
clients, breaker (per-endpoint circuit breaker that loses no request), budget (SQLite
spend ledger), tickets (GPU ticket interface + flock fallback), router (LLMRouter).
"""
