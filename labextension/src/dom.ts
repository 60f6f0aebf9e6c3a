/**
 * Small DOM helpers shared by the sidebar's widgets.
 */
import { LabIcon } from '@jupyterlab/ui-components';

type Attrs = Record<string, string | boolean | undefined>;

/** Creates an element with a class, attributes and children. */
export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Attrs = {},
  ...children: (Node | string | null | undefined)[]
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === false) {
      continue;
    }
    if (key === 'class') {
      node.className = String(value);
    } else {
      node.setAttribute(key, value === true ? '' : value);
    }
  }
  for (const child of children) {
    if (child !== null && child !== undefined) {
      node.append(child);
    }
  }
  return node;
}

/** Sets `node`'s text only when it differs, so unchanged cells are not touched. */
export function setText(node: HTMLElement, text: string): void {
  if (node.textContent !== text) {
    node.textContent = text;
  }
}

/** Sets or removes an attribute only when it differs. */
export function setAttr(
  node: HTMLElement,
  name: string,
  value: string | null
): void {
  if (value === null) {
    if (node.hasAttribute(name)) {
      node.removeAttribute(name);
    }
  } else if (node.getAttribute(name) !== value) {
    node.setAttribute(name, value);
  }
}

/**
 * Roving tabindex for a `role="toolbar"`: one tab stop (the last focused button), arrow
 * keys, Home and End move between the enabled buttons.
 */
export function rovingToolbar(toolbar: HTMLElement): () => void {
  const buttons = () =>
    Array.from(toolbar.querySelectorAll<HTMLButtonElement>('button')).filter(
      b => !b.disabled
    );
  const sync = () => {
    const all = Array.from(
      toolbar.querySelectorAll<HTMLButtonElement>('button')
    );
    const enabled = buttons();
    let current = all.find(b => b.tabIndex === 0 && !b.disabled) ?? enabled[0];
    if (!current) {
      current = all[0];
    }
    for (const button of all) {
      button.tabIndex = button === current ? 0 : -1;
    }
  };
  toolbar.addEventListener('focusin', event => {
    const target = event.target as HTMLElement;
    if (target instanceof HTMLButtonElement) {
      for (const button of toolbar.querySelectorAll<HTMLButtonElement>(
        'button'
      )) {
        button.tabIndex = button === target ? 0 : -1;
      }
    }
  });
  toolbar.addEventListener('keydown', event => {
    const enabled = buttons();
    const at = enabled.indexOf(document.activeElement as HTMLButtonElement);
    let next = -1;
    if (event.key === 'ArrowRight' || event.key === 'ArrowDown') {
      next = (at + 1) % enabled.length;
    } else if (event.key === 'ArrowLeft' || event.key === 'ArrowUp') {
      next = (at - 1 + enabled.length) % enabled.length;
    } else if (event.key === 'Home') {
      next = 0;
    } else if (event.key === 'End') {
      next = enabled.length - 1;
    }
    if (next >= 0 && enabled.length) {
      event.preventDefault();
      event.stopPropagation();
      enabled[next].focus();
    }
  });
  sync();
  return sync;
}

/** The sidebar's one polite live region: short announcements, the latest wins. */
export class StatusRegion {
  readonly node = h('div', {
    class: 'eb-VisuallyHidden',
    role: 'status',
    'aria-live': 'polite'
  });

  private _timer: number | null = null;

  announce(text: string): void {
    // Re-setting the same text is not announced again; clear first so it is.
    this.dispose();
    this.node.textContent = '';
    this._timer = window.setTimeout(() => {
      this._timer = null;
      this.node.textContent = text;
    }, 50);
  }

  /** Cancels an announcement not made yet. */
  dispose(): void {
    if (this._timer !== null) {
      window.clearTimeout(this._timer);
      this._timer = null;
    }
  }
}

/** A button with an icon, a visible tooltip and an accessible name. */
export function iconButton(
  icon: LabIcon | null,
  label: string,
  onClick: (event: MouseEvent) => void,
  className = ''
): HTMLButtonElement {
  const button = h('button', {
    type: 'button',
    class: `eb-IconButton ${className}`.trim(),
    title: label,
    'aria-label': label
  });
  if (icon) {
    button.append(
      icon.element({ tag: 'span', className: 'eb-IconButton-icon' })
    );
  }
  button.addEventListener('click', onClick);
  return button;
}
