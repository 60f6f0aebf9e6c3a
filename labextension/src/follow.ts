/**
 * A main-area view that re-reads its content on an interval while its "Follow" box is
 * checked and it is visible: the log view and the recent-requests view.
 *
 * The interval is a `@lumino/polling` `Poll`: it stands by while the view is hidden, not
 * following, paused (the subclass's `stopped()`), or the browser tab is hidden, and reads
 * the interval setting before every tick, so a changed setting applies at the next one.
 */
import { Message } from '@lumino/messaging';
import { Poll } from '@lumino/polling';
import { Widget } from '@lumino/widgets';

import { h } from './dom';

export abstract class FollowingView extends Widget {
  /** The "Follow" checkbox; the subclass places it (with a label) in its bar. */
  protected readonly follow: HTMLInputElement;
  private readonly _interval: () => number;
  private readonly _poll: Poll;
  private _loading: Promise<void> | null = null;

  /** `interval` (ms between reads) is read before every tick, so settings apply live. */
  constructor(followId: string, interval: () => number) {
    super();
    this._interval = interval;
    this.follow = h('input', { type: 'checkbox', checked: true, id: followId });
    this.follow.addEventListener('change', () => this.schedule());
    this._poll = new Poll({
      auto: false,
      factory: () => this._tick(),
      frequency: { interval: interval(), backoff: false },
      name: '@edgebook/labextension:follow',
      standby: () => !this._following() || !this.isVisible || 'when-hidden'
    });
  }

  /** Reads and shows the content (one read at a time). */
  load(): Promise<void> {
    if (!this._loading) {
      this._loading = this.read().finally(() => {
        this._loading = null;
      });
    }
    return this._loading;
  }

  /** The read in flight, if any. */
  protected get reading(): Promise<void> | null {
    return this._loading;
  }

  /** One read of the content. */
  protected abstract read(): Promise<void>;

  /** True while the view must not read (paused, or its endpoint is gone). */
  protected abstract stopped(): boolean;

  /** Call after what `stopped()` or the Follow box says changed: reads now if following
   * again; otherwise the poll stands by from its next tick. */
  protected schedule(): void {
    if (this._following()) {
      void this._poll.refresh();
    }
  }

  private _following(): boolean {
    return (
      this.follow.checked &&
      !this.stopped() &&
      !this.isDisposed &&
      this.isAttached
    );
  }

  private async _tick(): Promise<void> {
    const interval = this._interval();
    if (interval !== this._poll.frequency.interval) {
      this._poll.frequency = { ...this._poll.frequency, interval };
    }
    await this.load();
  }

  protected onAfterAttach(msg: Message): void {
    super.onAfterAttach(msg);
    void this.load();
    void this._poll.start();
  }

  dispose(): void {
    if (this.isDisposed) {
      return;
    }
    this._poll.dispose();
    super.dispose();
  }
}
