// Browser APIs jsdom lacks that JupyterLab's packages touch when they load.
if (typeof window !== 'undefined') {
  const g = globalThis as Record<string, unknown>;
  if (!g.DragEvent) {
    g.DragEvent = class DragEvent extends MouseEvent {
      readonly dataTransfer = null;
    };
  }
  if (!window.matchMedia) {
    window.matchMedia = (query: string) =>
      ({
        matches: false,
        media: query,
        onchange: null,
        addListener: () => undefined,
        removeListener: () => undefined,
        addEventListener: () => undefined,
        removeEventListener: () => undefined,
        dispatchEvent: () => false
      }) as MediaQueryList;
  }
  if (!g.ResizeObserver) {
    g.ResizeObserver = class {
      observe(): void {}
      unobserve(): void {}
      disconnect(): void {}
    };
  }
}
