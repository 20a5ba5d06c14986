/**
 * The contract configuration from the issue, verbatim, except that the `file:` reference of the
 * Anthropic key points at a temporary 0600 file instead of /run/secrets/anthropic.
 * It needs KEYWARDEN_ADMIN_TOKEN, KEYWARDEN_PROMPT_HMAC_KEY and OPENAI_API_KEY in the environment.
 */
export function contractConfigYaml(anthropicKeyFile: string): string {
  return `listen:
  public: 127.0.0.1:8080
  admin: 127.0.0.1:8081
store: sqlite:./data/keywarden.db
admin:
  token: env:KEYWARDEN_ADMIN_TOKEN
audit:
  prompt_hmac_key: env:KEYWARDEN_PROMPT_HMAC_KEY
providers:
  openai:
    type: openai
    base_url: https://api.openai.com/v1
    api_key: env:OPENAI_API_KEY
    timeout: 60s
  anthropic:
    type: anthropic
    base_url: https://api.anthropic.com
    api_key: file:${anthropicKeyFile}
models:
  gpt-4o-mini: { provider: openai }
  fast: { provider: openai, model: gpt-4o-mini }
  text-embedding-3-small: { provider: openai }
  claude-3-5-haiku-latest: { provider: anthropic }
tenants:
  defaults:
    policy:
      models: [gpt-4o-mini, fast, text-embedding-3-small, claude-3-5-haiku-latest]
      params: [temperature, top_p, stop, max_tokens, max_completion_tokens, max_output_tokens, stream, stream_options, system, instructions, encoding_format, dimensions]
      tools: false
      files: false
      max_body_bytes: 1048576
      max_output_tokens: 4096
`;
}
