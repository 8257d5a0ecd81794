"""The LLM router's parts (private to procs.llm.service, which re-exports the public face).

types (LLMRequest/LLMResponse + codecs), errors, config, llama_cpp and anthropic_api
clients, breaker (per-endpoint circuit breaker that loses no request), budget (SQLite
spend ledger), tickets (GPU ticket interface + flock fallback), router (LLMRouter).

The model gateway (agents' model server on 127.0.0.1, a metered pass-through) is a
second service of this kind, `procs.llm.gateway_service:main`: gateway (the HTTP front
and its in-process API), gateway_exchange (one HTTP exchange), gateway_upstream (breaker,
GPU ticket, bounded call, relay), gateway_usage (usage out of answers and streams),
gateway_store (tokens, budgets, usage per bead and role in SQLite), gateway_config.
"""
