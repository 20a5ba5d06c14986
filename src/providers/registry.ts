import { createAnthropicAdapter } from './anthropic/adapter.js';
import { createOpenAiAdapter } from './openai/adapter.js';
import type { ProviderAdapter, ProviderType } from './types.js';

/** The adapter for a provider type. Adding a provider means adding a case here (the switch is exhaustive). */
export function createProviderAdapter(type: ProviderType): ProviderAdapter {
  switch (type) {
    case 'openai':
      return createOpenAiAdapter();
    case 'anthropic':
      return createAnthropicAdapter();
    default: {
      const unknownType: never = type;
      throw new Error(`unknown provider type: ${String(unknownType)}`);
    }
  }
}
