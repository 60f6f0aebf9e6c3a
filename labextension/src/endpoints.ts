/**
 * The endpoint list: one row per endpoint of the `IEndpointsModel`, patched in place when
 * the model says what changed. Row buttons and the context menu run the `edgebook:*`
 * commands.
 */
import { Clipboard } from '@jupyterlab/apputils';
import { TranslationBundle } from '@jupyterlab/translation';
import { copyIcon, LabIcon } from '@jupyterlab/ui-components';
import { CommandRegistry } from '@lumino/commands';
import { Message } from '@lumino/messaging';
import { Widget } from '@lumino/widgets';

import {
  h,
  iconButton,
  rovingToolbar,
  setAttr,
  setText,
  StatusRegion
} from './dom';
import {
  FIRST_ENDPOINT_SNIPPET,
  formatCount,
  formatMs,
  formatPercent,
  IEndpointDiff,
  IEndpointView,
  hasWarning,
  stateLabel,
  stateTone
} from './model';
import {
  CommandIDs,
  ENDPOINT_COMMANDS,
  IBuildProgress,
  IEndpointsModel
} from './tokens';

export interface IEndpointListOptions {
  model: IEndpointsModel;
  commands: CommandRegistry;
  trans: TranslationBundle;
  /** Where state changes are announced (one region for the whole sidebar). */
  status: StatusRegion;
  /** The locale numbers are written in (the user's when undefined). */
  locale?: string;
  notify?: (message: string) => void;
}

const STATE_BUSY = new Set(['building', 'starting']);

/** One endpoint's row; `render` touches only what changed. */
class EndpointRow {
  readonly node: HTMLLIElement;
  private _view: IEndpointView;
  private readonly _method = h('span', { class: 'eb-Method' });
  private readonly _path = h('span', { class: 'eb-Path' });
  private readonly _state = h('span', { class: 'eb-State' });
  private readonly _name = h('span', { class: 'eb-Name' });
  private readonly _revision = h('span', {
    class: 'eb-Stat',
    'data-stat': 'revision'
  });
  private readonly _workers = h('span', {
    class: 'eb-Stat',
    'data-stat': 'workers'
  });
  private readonly _requests = h('span', {
    class: 'eb-Stat',
    'data-stat': 'requests'
  });
  private readonly _errorRate = h('span', {
    class: 'eb-Stat',
    'data-stat': 'error-rate'
  });
  private readonly _p50 = h('span', { class: 'eb-Stat', 'data-stat': 'p50' });
  private readonly _p99 = h('span', { class: 'eb-Stat', 'data-stat': 'p99' });
  private readonly _reason = h('div', { class: 'eb-Reason' });
  private readonly _lastError = h('div', { class: 'eb-LastError' });
  private readonly _progress = h('div', { class: 'eb-Progress' });
  private readonly _origin: HTMLButtonElement;
  private readonly _buttons = new Map<string, HTMLButtonElement>();
  private readonly _syncToolbar: () => void;

  constructor(
    view: IEndpointView,
    private readonly _list: EndpointList
  ) {
    this._view = view;
    const { commands, trans } = _list;
    this._origin = h(
      'button',
      { type: 'button', class: 'eb-Origin eb-LinkButton' },
      ''
    );
    this._origin.addEventListener('click', () => {
      void commands.execute(CommandIDs.jumpToCell, { name: this._view.name });
    });
    const toolbar = h('div', {
      class: 'eb-Actions',
      role: 'toolbar',
      'aria-label': trans.__('Actions for %1', view.name)
    });
    for (const id of ENDPOINT_COMMANDS) {
      const args = { name: view.name };
      const label = commands.label(id, args);
      const icon = commands.icon(id, args);
      const button = iconButton(
        icon instanceof LabIcon ? icon : null,
        label,
        () => void commands.execute(id, { name: this._view.name }),
        id === CommandIDs.remove ? 'eb-Danger' : ''
      );
      button.dataset.command = id;
      this._buttons.set(id, button);
      toolbar.append(button);
    }
    this._syncToolbar = rovingToolbar(toolbar);
    this.node = h(
      'li',
      { class: 'eb-Endpoint', 'data-name': view.name },
      h(
        'div',
        { class: 'eb-EndpointHead' },
        this._method,
        this._path,
        this._state
      ),
      h(
        'div',
        { class: 'eb-Stats' },
        this._name,
        this._revision,
        this._workers,
        this._requests,
        this._errorRate,
        this._p50,
        this._p99
      ),
      this._progress,
      this._reason,
      this._lastError,
      this._origin,
      toolbar
    );
    this.render(view);
  }

  get view(): IEndpointView {
    return this._view;
  }

  /** Shows `view`, touching only nodes whose text or attributes change. */
  render(view: IEndpointView): void {
    const { trans, locale, commands } = this._list;
    this._view = view;
    const tone = stateTone(view.state);
    setText(this._method, view.method);
    setAttr(this._method, 'data-method', view.method);
    setText(this._path, view.domain ? `${view.domain}${view.path}` : view.path);
    setText(this._state, stateLabel(view.state, trans));
    setAttr(this._state, 'data-state', view.state);
    setAttr(this._state, 'data-tone', tone);
    setAttr(this.node, 'data-state', view.state);
    setText(this._name, view.name);
    setText(
      this._revision,
      view.revision === null
        ? trans.__('rev %1', '\u2013')
        : trans.__('rev %1', String(view.revision))
    );
    setAttr(this._revision, 'title', trans.__('Live revision'));
    setText(
      this._workers,
      view.workers === null
        ? trans.__('%1 workers', '\u2013')
        : trans._n('%1 worker', '%1 workers', view.workers)
    );
    setText(
      this._requests,
      trans.__('%1 req', formatCount(view.requests, locale))
    );
    setAttr(
      this._requests,
      'title',
      trans.__(
        '%1 requests, %2 errors',
        formatCount(view.requests, locale),
        formatCount(view.errors, locale)
      )
    );
    setText(
      this._errorRate,
      trans.__('%1 err', formatPercent(view.errorRate, locale))
    );
    setAttr(this._errorRate, 'data-bad', view.errorRate ? 'true' : null);
    setAttr(this._errorRate, 'title', trans.__('Error rate'));
    setText(this._p50, `p50 ${formatMs(view.p50, locale)}`);
    setText(this._p99, `p99 ${formatMs(view.p99, locale)}`);
    const warning = hasWarning(view.state);
    const showReason = !!view.reason && (tone !== 'ok' || warning);
    setText(this._reason, showReason ? (view.reason ?? '') : '');
    this._reason.hidden = !showReason;
    setAttr(this._reason, 'data-tone', warning ? 'warn' : tone);
    setText(
      this._lastError,
      view.lastError ? trans.__('Last error: %1', view.lastError) : ''
    );
    this._lastError.hidden = !view.lastError;
    if (!STATE_BUSY.has(view.state)) {
      this.progress('');
    }
    const notebook = view.origin?.notebook;
    setText(
      this._origin,
      notebook ? trans.__('From %1', basename(notebook)) : ''
    );
    setAttr(
      this._origin,
      'aria-label',
      notebook
        ? trans.__('Go to the cell of %1 in %2', view.name, notebook)
        : null
    );
    const cell = view.origin?.cell_id;
    setAttr(
      this._origin,
      'title',
      notebook
        ? cell
          ? trans.__('%1 (cell %2)', notebook, cell)
          : notebook
        : null
    );
    this._origin.hidden = !notebook;
    for (const [id, button] of this._buttons) {
      button.disabled = !commands.isEnabled(id, { name: view.name });
    }
    this._syncToolbar();
  }

  /** Shows a build progress line (empty hides it). */
  progress(text: string): void {
    setText(this._progress, text);
    this._progress.hidden = !text;
  }
}

function basename(path: string): string {
  return path.split('/').pop() || path;
}

/** The endpoints of the model, as rows. */
export class EndpointList extends Widget {
  readonly model: IEndpointsModel;
  readonly commands: CommandRegistry;
  readonly trans: TranslationBundle;
  readonly locale: string | undefined;
  private readonly _status: StatusRegion;
  private readonly _rows = new Map<string, EndpointRow>();
  private readonly _list: HTMLUListElement;
  private readonly _empty: HTMLElement;
  private readonly _banner = h('div', { class: 'eb-Banner', role: 'alert' });
  private _current: string | null = null;

  constructor(options: IEndpointListOptions) {
    super();
    const { trans } = options;
    this.addClass('eb-Endpoints');
    this.model = options.model;
    this.commands = options.commands;
    this.trans = trans;
    this.locale = options.locale;
    this._status = options.status;
    this.title.label = trans.__('Endpoints');
    this._list = h('ul', {
      class: 'eb-EndpointList',
      'aria-label': trans.__('Endpoints')
    });
    const notify = options.notify ?? (() => undefined);
    const snippet = h(
      'pre',
      { class: 'eb-Snippet', tabindex: '0' },
      FIRST_ENDPOINT_SNIPPET
    );
    const copySnippet = iconButton(
      copyIcon,
      trans.__('Copy the example cell'),
      () => {
        Clipboard.copyToSystem(FIRST_ENDPOINT_SNIPPET);
        notify(trans.__('Copied the example cell'));
      }
    );
    this._empty = h(
      'div',
      { class: 'eb-Empty' },
      h('p', { class: 'eb-EmptyTitle' }, trans.__('No endpoints yet')),
      h(
        'p',
        {},
        trans.__(
          'In a Python notebook, run %1, then a cell like this one: its Rust body compiles into a live HTTP endpoint that appears here as soon as it builds.',
          '%load_ext edgebook'
        )
      ),
      h('div', { class: 'eb-SnippetBox' }, snippet, copySnippet)
    );
    this._empty.hidden = true;
    this._banner.hidden = true;
    this.node.append(this._banner, this._empty, this._list);
    this._list.addEventListener('focusin', event => {
      const row = (event.target as HTMLElement).closest<HTMLElement>(
        '.eb-Endpoint'
      );
      this._current = row?.dataset.name ?? this._current;
    });
    this.model.changed.connect(this._onChanged, this);
    this.model.buildProgress.connect(this._onProgress, this);
    this.model.statusChanged.connect(this._onStatus, this);
    this.commands.commandChanged.connect(this._onCommandChanged, this);
    // Rows are built on attach: the row buttons read labels and icons from commands that
    // are registered after the list is made.
  }

  /** The endpoint whose row last had the focus, if it still exists. */
  get current(): string | null {
    return this._current && this.model.views.has(this._current)
      ? this._current
      : null;
  }

  /** The row of `name`, if shown. */
  rowNode(name: string): HTMLElement | null {
    return this._rows.get(name)?.node ?? null;
  }

  /** Puts the focus on the first row's toolbar (or the example snippet). */
  focusFirst(): void {
    const target =
      this._list.querySelector<HTMLElement>(
        '.eb-Actions button[tabindex="0"]'
      ) ?? this._empty.querySelector<HTMLElement>('.eb-Snippet');
    target?.focus();
  }

  private _onChanged(model: IEndpointsModel, diff: IEndpointDiff): void {
    const { trans } = this;
    for (const name of diff.removed) {
      this._rows.get(name)?.node.remove();
      this._rows.delete(name);
      this._status.announce(trans.__('%1 was removed', name));
    }
    for (const name of [...diff.added, ...diff.changed]) {
      const view = model.views.get(name);
      if (!view) {
        continue;
      }
      const row = this._rows.get(name);
      if (row) {
        if (row.view.state !== view.state) {
          this._status.announce(
            trans.__('%1 is %2', name, stateLabel(view.state, trans))
          );
        }
        row.render(view);
      } else {
        this._rows.set(name, new EndpointRow(view, this));
      }
    }
    // Reorder only where the order on screen differs (moving a node restarts nothing else).
    let previous: Element | null = null;
    for (const name of diff.order) {
      const node = this._rows.get(name)?.node;
      if (!node) {
        continue;
      }
      const expected: Element | null = previous
        ? previous.nextElementSibling
        : this._list.firstElementChild;
      if (expected !== node) {
        this._list.insertBefore(node, expected);
      }
      previous = node;
    }
    this._empty.hidden = diff.order.length > 0;
    this._list.hidden = diff.order.length === 0;
    this._onStatus(model);
  }

  private _onProgress(_: IEndpointsModel, progress: IBuildProgress): void {
    const { trans } = this;
    const text =
      progress.phase === 'finished'
        ? ''
        : progress.phase === 'progress'
          ? progress.message || trans.__('building\u2026')
          : progress.phase === 'started'
            ? trans.__('build started')
            : progress.phase === 'release_queued'
              ? trans.__('release build queued')
              : trans.__('build %1', progress.phase);
    this._rows.get(progress.endpoint)?.progress(text);
  }

  private _onStatus(model: IEndpointsModel): void {
    setText(this._banner, model.error ?? '');
    this._banner.hidden = !model.error;
  }

  /** Enabled states depend on commands other extensions may change. */
  private _onCommandChanged(): void {
    for (const row of this._rows.values()) {
      row.render(row.view);
    }
  }

  protected onAfterAttach(msg: Message): void {
    super.onAfterAttach(msg);
    // The model may have loaded before this list existed (it starts polling when its
    // plugin activates): show what it holds, the empty state included.
    if (this.model.loaded && this._rows.size === 0) {
      const names = [...this.model.views.keys()];
      this._onChanged(this.model, {
        added: names,
        removed: [],
        changed: [],
        order: names
      });
    }
    // A panel restored collapsed is never shown: nobody is looking, so no polling.
    this.model.active = this.isVisible;
  }

  protected onAfterShow(msg: Message): void {
    super.onAfterShow(msg);
    this.model.active = true;
  }

  protected onAfterHide(msg: Message): void {
    this.model.active = false;
    super.onAfterHide(msg);
  }

  dispose(): void {
    if (this.isDisposed) {
      return;
    }
    this.model.changed.disconnect(this._onChanged, this);
    this.model.buildProgress.disconnect(this._onProgress, this);
    this.model.statusChanged.disconnect(this._onStatus, this);
    this.commands.commandChanged.disconnect(this._onCommandChanged, this);
    super.dispose();
  }
}
