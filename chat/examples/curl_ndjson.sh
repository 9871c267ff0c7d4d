# Start a conversation, then send a message and stream its reply as NDJSON: one JSON event a line.
: "${CHAT_URL:=http://127.0.0.1:8000}" "${CHAT_TOKEN:?make a token on the API tokens page}"
CONVERSATION=$(curl -sS --fail-with-body -X POST "$CHAT_URL/api/conversations/" \
  -H "Authorization: Bearer $CHAT_TOKEN" -H "Content-Type: application/json" \
  -d '{"thinking": false}' | python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])')
curl -sS -N --fail-with-body -X POST "$CHAT_URL/api/conversations/$CONVERSATION/messages/" \
  -H "Authorization: Bearer $CHAT_TOKEN" -H "Content-Type: application/json" \
  -H "Accept: application/x-ndjson" \
  -d '{"content": "Write a haiku about rivers."}'
