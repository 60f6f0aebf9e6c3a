/**
 * Main-area views opened from the sidebar: an endpoint's log (follows new lines) and its
 * source, highlighted as Rust, with the notebook cell it came from.
 */
import { IEditorLanguageRegistry } from '@jupyterlab/codemirror';
import { TranslationBundle } from '@jupyterlab/translation';
import { Message } from '@lumino/messaging';
import { Widget } from '@lumino/widgets';

import { h, setText } from './dom';
import { FollowingView } from './follow';
import { APIError, endpointPath, requestAPI } from './handler';
import { IEndpointView, logLineText } from './model';
import { IDeletion, IEndpointsModel, ILogs, ISource } from './tokens';

export interface ILogViewOptions {
  name: string;
  model: IEndpointsModel;
  trans: TranslationBundle;
  /** How many lines to ask for; read before every fetch, so settings apply live. */
  tail: () => number;
  /** Milliseconds between fetches while following; read before every wait. */
  interval: () => number;
}

/** The last lines of an endpoint's log, refreshed while "Follow" is on. */
export class LogView extends FollowingView {
  readonly endpoint: string;
  private readonly _pre: HTMLPreElement;
  private readonly _status = h('span', {
    class: 'eb-FieldNote',
    role: 'status'
  });
  private readonly _options: ILogViewOptions;
  private _lastText = '';
  private _paused = false;

  constructor(options: ILogViewOptions) {
    super(`eb-follow-${options.name}`, () => options.interval());
    const { trans } = options;
    this.addClass('eb-LogView');
    this.endpoint = options.name;
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
        this._status
      ),
      this._pre
    );
    options.model.deleting.connect(this._onDeleting, this);
    options.model.removed.connect(this._onRemoved, this);
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

  /** The endpoint is gone: keep the lines, stop following for good. */
  markGone(): void {
    this._paused = true;
    this.follow.checked = false;
    this.follow.disabled = true;
    this.schedule();
    setText(
      this._status,
      this._options.trans.__('%1 no longer exists', this.endpoint)
    );
  }

  private _onDeleting(_: IEndpointsModel, deletion: IDeletion): void {
    if (deletion.endpoint !== this.endpoint) {
      return;
    }
    if (deletion.phase === 'pending') {
      void this.pause();
    } else if (deletion.phase === 'gone') {
      this.markGone();
    } else {
      this.resume();
    }
  }

  private _onRemoved(_: IEndpointsModel, name: string): void {
    if (name === this.endpoint) {
      this.markGone();
    }
  }

  protected stopped(): boolean {
    return this._paused;
  }

  /** Fetches the tail and shows it. */

  protected async read(): Promise<void> {
    if (this._paused) {
      return;
    }
    const { trans } = this._options;
    try {
      const data = await requestAPI<ILogs>(
        `${endpointPath(this.endpoint, 'logs')}?tail=${this._options.tail()}`
      );
      const text = (data?.lines ?? []).map(logLineText).join('\n');
      if (text !== this._lastText) {
        const atBottom =
          this._pre.scrollHeight -
            this._pre.scrollTop -
            this._pre.clientHeight <
          24;
        this._lastText = text;
        this._pre.textContent = text || trans.__('(no log lines yet)');
        if (atBottom || this.follow.checked) {
          this._pre.scrollTop = this._pre.scrollHeight;
        }
      }
      setText(this._status, '');
    } catch (error) {
      if (error instanceof APIError && error.status === 404) {
        this.markGone();
        return;
      }
      setText(
        this._status,
        trans.__('Cannot read the log: %1', (error as Error).message)
      );
    }
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
