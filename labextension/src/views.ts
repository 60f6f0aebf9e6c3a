/**
 * Main-area views opened from the sidebar: an endpoint's log (follows new lines) and its
 * source with the notebook cell it came from.
 */
import { Message } from '@lumino/messaging';
import { Widget } from '@lumino/widgets';

import { h, setText } from './dom';
import { APIError, endpointPath, requestAPI } from './handler';
import { IEndpointView, logLineText } from './model';
import { ILogs, ISource } from './tokens';

export interface ILogViewOptions {
  name: string;
  /** How many lines to ask for. */
  tail?: number;
  /** Milliseconds between fetches while following. */
  interval?: number;
}

/** The last lines of an endpoint's log, refreshed while "Follow" is on. */
export class LogView extends Widget {
  readonly endpoint: string;
  private readonly _pre = h('pre', { class: 'eb-Log', tabindex: '0', 'aria-label': 'Log lines' });
  private readonly _follow: HTMLInputElement;
  private readonly _status = h('span', { class: 'eb-FieldNote', role: 'status' });
  private readonly _tail: number;
  private readonly _interval: number;
  private _timer: number | null = null;
  private _lastText = '';
  private _paused = false;
  private _loading: Promise<void> | null = null;

  constructor(options: ILogViewOptions) {
    super();
    this.addClass('eb-LogView');
    this.endpoint = options.name;
    this._tail = options.tail ?? 500;
    this._interval = options.interval ?? 1000;
    this._follow = h('input', { type: 'checkbox', checked: true, id: `eb-follow-${options.name}` });
    this._follow.addEventListener('change', () => this._schedule());
    this.node.append(
      h(
        'div',
        { class: 'eb-LogBar' },
        h('label', { for: this._follow.id }, this._follow, ' Follow'),
        this._status
      ),
      this._pre
    );
  }

  /** Stops fetching (and waits for a fetch in flight), e.g. while the endpoint is deleted. */
  async pause(): Promise<void> {
    this._paused = true;
    this._schedule();
    await this._loading;
  }

  /** Fetches again after `pause`. */
  resume(): void {
    this._paused = false;
    this._schedule();
  }

  /** The endpoint is gone: keep the lines, stop following for good. */
  markGone(): void {
    this._paused = true;
    this._follow.checked = false;
    this._follow.disabled = true;
    this._schedule();
    setText(this._status, `${this.endpoint} no longer exists`);
  }

  /** Fetches the tail and shows it (one fetch at a time). */
  load(): Promise<void> {
    if (!this._loading) {
      this._loading = this._load().finally(() => {
        this._loading = null;
      });
    }
    return this._loading;
  }

  private async _load(): Promise<void> {
    if (this._paused) {
      return;
    }
    try {
      const data = await requestAPI<ILogs>(
        `${endpointPath(this.endpoint, 'logs')}?tail=${this._tail}`
      );
      const text = (data?.lines ?? []).map(logLineText).join('\n');
      if (text !== this._lastText) {
        const atBottom =
          this._pre.scrollHeight - this._pre.scrollTop - this._pre.clientHeight < 24;
        this._lastText = text;
        this._pre.textContent = text || '(no log lines yet)';
        if (atBottom || this._follow.checked) {
          this._pre.scrollTop = this._pre.scrollHeight;
        }
      }
      setText(this._status, '');
    } catch (error) {
      if (error instanceof APIError && error.status === 404) {
        this.markGone();
        return;
      }
      setText(this._status, `Cannot read the log: ${(error as Error).message}`);
    }
  }

  private _schedule(): void {
    if (this._timer !== null) {
      window.clearTimeout(this._timer);
      this._timer = null;
    }
    if (!this._follow.checked || this._paused || this.isDisposed) {
      return;
    }
    this._timer = window.setTimeout(async () => {
      this._timer = null;
      if (this.isVisible) {
        await this.load();
      }
      this._schedule();
    }, this._interval);
  }

  protected onAfterAttach(msg: Message): void {
    super.onAfterAttach(msg);
    void this.load();
    this._schedule();
  }

  protected onBeforeDetach(msg: Message): void {
    if (this._timer !== null) {
      window.clearTimeout(this._timer);
      this._timer = null;
    }
    super.onBeforeDetach(msg);
  }
}

/** An endpoint's Rust source and the notebook cell it came from. */
export class SourceView extends Widget {
  private readonly _pre = h('pre', { class: 'eb-Source', tabindex: '0', 'aria-label': 'Rust source' });
  private readonly _status = h('span', { class: 'eb-FieldNote', role: 'status' });

  constructor(
    readonly view: IEndpointView,
    jumpToOrigin: (view: IEndpointView) => void
  ) {
    super();
    this.addClass('eb-SourceView');
    const notebook = view.origin?.notebook;
    const origin = notebook
      ? h('button', { type: 'button', class: 'eb-Button' }, `Go to the cell in ${notebook}`)
      : h('span', { class: 'eb-FieldNote' }, 'Not deployed from a notebook cell');
    if (notebook) {
      origin.addEventListener('click', () => jumpToOrigin(this.view));
    }
    this.node.append(
      h(
        'div',
        { class: 'eb-LogBar' },
        h('span', { class: 'eb-Method', 'data-method': view.method }, view.method),
        h('span', { class: 'eb-Path' }, view.path),
        origin,
        this._status
      ),
      this._pre
    );
  }

  async load(): Promise<void> {
    try {
      const data = await requestAPI<ISource>(endpointPath(this.view.name, 'source'));
      this._pre.textContent = data?.source ?? '';
    } catch (error) {
      setText(this._status, `Cannot read the source: ${(error as Error).message}`);
    }
  }

  protected onAfterAttach(msg: Message): void {
    super.onAfterAttach(msg);
    void this.load();
  }
}
