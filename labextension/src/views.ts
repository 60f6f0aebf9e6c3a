/**
 * Main-area views opened from the sidebar: an endpoint's log (follows new lines) and its
 * source, highlighted as Rust, with the notebook cell it came from.
 */
import { IEditorLanguageRegistry } from '@jupyterlab/codemirror';
import { TranslationBundle } from '@jupyterlab/translation';
import { Message } from '@lumino/messaging';
import { Widget } from '@lumino/widgets';

import { h, setText } from './dom';
import { FollowingView, IFollowingViewOptions } from './follow';
import { endpointPath, requestAPI } from './handler';
import { IEndpointView, logLineText } from './model';
import { IDeletion, ILogs, ISource } from './tokens';

export interface ILogViewOptions extends IFollowingViewOptions {
  /** How many lines to ask for; read before every fetch, so settings apply live. */
  tail: () => number;
}

/** The last lines of an endpoint's log, refreshed while "Follow" is on. */
export class LogView extends FollowingView {
  private readonly _pre: HTMLPreElement;
  private readonly _options: ILogViewOptions;
  private _lastText = '';
  private _paused = false;

  constructor(options: ILogViewOptions) {
    super(`eb-follow-${options.name}`, options);
    const { trans } = options;
    this.addClass('eb-LogView');
    this._options = options;
    this._pre = h('pre', {
      class: 'eb-Log',
      tabindex: '0',
      'aria-label': trans.__('Log lines')
    });
    this.node.append(
      h(
        'div',
        { class: 'eb-LogBar' },
        h(
          'label',
          { for: this.follow.id },
          this.follow,
          ' ',
          trans.__('Follow')
        ),
        this.status
      ),
      this._pre
    );
  }

  /** Stops fetching (and waits for a fetch in flight), e.g. while the endpoint is deleted. */
  async pause(): Promise<void> {
    this._paused = true;
    this.schedule();
    await this.reading;
  }

  /** Fetches again after `pause`. */
  resume(): void {
    this._paused = false;
    this.schedule();
  }

  protected onDeleting(deletion: IDeletion): void {
    if (deletion.phase === 'pending') {
      void this.pause();
    } else if (deletion.phase === 'gone') {
      this.markGone();
    } else {
      this.resume();
    }
  }

  protected stopped(): boolean {
    return this._paused || this.gone;
  }

  /** Fetches the tail and shows it. */
  protected async fetchAndShow(): Promise<void> {
    const { trans } = this._options;
    const data = await requestAPI<ILogs>(
      `${endpointPath(this.endpoint, 'logs')}?tail=${this._options.tail()}`
    );
    const text = (data?.lines ?? []).map(logLineText).join('\n');
    if (text !== this._lastText) {
      const atBottom =
        this._pre.scrollHeight - this._pre.scrollTop - this._pre.clientHeight <
        24;
      this._lastText = text;
      this._pre.textContent = text || trans.__('(no log lines yet)');
      if (atBottom || this.follow.checked) {
        this._pre.scrollTop = this._pre.scrollHeight;
      }
    }
  }

  protected failedRead(message: string): string {
    return this._options.trans.__('Cannot read the log: %1', message);
  }
}

export interface ISourceViewOptions {
  view: IEndpointView;
  trans: TranslationBundle;
  /** Highlights the source as Rust; plain text without it. */
  languages: IEditorLanguageRegistry | null;
  jumpToOrigin: (view: IEndpointView) => void;
}

/** An endpoint's Rust source and the notebook cell it came from. */
export class SourceView extends Widget {
  readonly view: IEndpointView;
  private readonly _pre: HTMLPreElement;
  private readonly _status = h('span', {
    class: 'eb-FieldNote',
    role: 'status'
  });
  private readonly _languages: IEditorLanguageRegistry | null;
  private readonly _trans: TranslationBundle;

  constructor(options: ISourceViewOptions) {
    super();
    const { view, trans } = options;
    this.view = view;
    this._trans = trans;
    this._languages = options.languages;
    this.addClass('eb-SourceView');
    this._pre = h('pre', {
      class: 'eb-Source cm-s-jupyter',
      tabindex: '0',
      'aria-label': trans.__('Rust source')
    });
    const notebook = view.origin?.notebook;
    const origin = notebook
      ? h(
          'button',
          { type: 'button', class: 'eb-Button' },
          trans.__('Go to the cell in %1', notebook)
        )
      : h(
          'span',
          { class: 'eb-FieldNote' },
          trans.__('Not deployed from a notebook cell')
        );
    if (notebook) {
      origin.addEventListener('click', () => options.jumpToOrigin(this.view));
    }
    this.node.append(
      h(
        'div',
        { class: 'eb-LogBar' },
        h(
          'span',
          { class: 'eb-Method', 'data-method': view.method },
          view.method
        ),
        h('span', { class: 'eb-Path' }, view.path),
        origin,
        this._status
      ),
      this._pre
    );
  }

  async load(): Promise<void> {
    try {
      const data = await requestAPI<ISource>(
        endpointPath(this.view.name, 'source')
      );
      const source = data?.source ?? '';
      const rust = this._languages?.findBest('rust') ?? null;
      if (this._languages && rust) {
        this._pre.replaceChildren(); // highlight() appends
        await this._languages.highlight(source, rust, this._pre);
        this._pre.dataset.highlighted = 'rust';
      } else {
        this._pre.textContent = source;
      }
    } catch (error) {
      setText(
        this._status,
        this._trans.__('Cannot read the source: %1', (error as Error).message)
      );
    }
  }

  protected onAfterAttach(msg: Message): void {
    super.onAfterAttach(msg);
    void this.load();
  }
}
