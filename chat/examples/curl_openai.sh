# The OpenAI-compatible endpoint: chunks as DeepSeek sends them, then "data: [DONE]".
: "${CHAT_URL:=http://127.0.0.1:8000}" "${CHAT_TOKEN:?make a token on the API tokens page}"
curl -sS -N --fail-with-body "$CHAT_URL/v1/chat/completions" \
  -H "Authorization: Bearer $CHAT_TOKEN" -H "Content-Type: application/json" \
  -d '{"model": "deepseek-v4-flash", "stream": true,
       "messages": [{"role": "user", "content": "Say hello in three languages."}]}'
