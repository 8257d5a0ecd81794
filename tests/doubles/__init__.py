"""TEST DOUBLES: local HTTP servers that speak the protocols of real model endpoints.

Each one scripts its replies and records what it was asked, so tests can drive a real
client (opencode, our llama.cpp and Anthropic clients) without a model or the internet:

- openai_chat.ChatCompletionsDouble: OpenAI-compatible /v1/chat/completions (opencode's model)
- llama_cpp.LlamaCppDouble: llama.cpp server /completion
- anthropic_messages.AnthropicMessagesDouble: Anthropic Messages API /v1/messages
"""
