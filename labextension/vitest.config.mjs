import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Pure modules run in node; widget tests opt into a DOM with `@vitest-environment jsdom`.
    environment: 'node',
    setupFiles: ['test/setupDom.ts'],
    // Its ESM build imports paths without extensions; let Vite resolve them.
    server: {
      deps: { inline: [/@jupyter\/web-components/, /@microsoft\/fast-/] }
    },
    // jsdom reports a hidden document unless it pretends to render, and the model's poll
    // stands by while the document is hidden.
    environmentOptions: { jsdom: { pretendToBeVisual: true } }
  }
});
