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
export function setAttr(node: HTMLElement, name: string, value: string | null): void {
  if (value === null) {
    if (node.hasAttribute(name)) {
      node.removeAttribute(name);
    }
  } else if (node.getAttribute(name) !== value) {
    node.setAttribute(name, value);
  }
}

/** A button with an icon, a visible tooltip and an accessible name. */
export function iconButton(
  icon: LabIcon,
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
  button.append(icon.element({ tag: 'span', className: 'eb-IconButton-icon' }));
  button.addEventListener('click', onClick);
  return button;
}

/** A plain text button. */
export function textButton(
  label: string,
  onClick: (event: MouseEvent) => void,
  className = ''
): HTMLButtonElement {
  const button = h('button', { type: 'button', class: `eb-Button ${className}`.trim() }, label);
  button.addEventListener('click', onClick);
  return button;
}
