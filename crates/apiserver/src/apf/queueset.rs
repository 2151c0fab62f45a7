//! One priority level's seats and queues: upstream's fair queuing for server requests
//! (`fairqueuing/queueset`) in its essentials. A request's flow picks, by shuffle
//! sharding, a hand of queues and joins the one with the least waiting work; when
//! seats are free, the queue whose head would finish first in virtual time is served
//! (virtual time advancing at the seats in use shared by the busy queues), so a flow
//! that floods its queues waits for itself while the others go on.
//!
//! Must never hand out more seats than the level's limit (except one request at a time
//! wider than the limit, as upstream), never leave a waiter in a queue after it gave up,
//! and never hold its lock while a ticket is released (releasing locks it again).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::oneshot;
use tokio::time::Instant;

/// How long a request is guessed to hold each seat, in seconds, until it finishes and
/// its queue's virtual time is corrected by what it really took (upstream's 3 ms).
const SERVICE_ESTIMATE: f64 = 0.003;

/// How a priority level answers when its seats are taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    /// Never limited (the `exempt` level): seats are counted, never waited for.
    Exempt,
    /// Refused at once (`limitResponse.type: Reject`).
    Reject,
    /// Queued (`limitResponse.type: Queue`).
    Queue { queues: usize, hand_size: usize, queue_length_limit: usize },
}

/// Why a request was refused, as upstream's `reason` label spells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rejection {
    QueueFull,
    ConcurrencyLimit,
    TimeOut,
    Cancelled,
}

impl Rejection {
    pub fn as_str(self) -> &'static str {
        match self {
            Rejection::QueueFull => "queue-full",
            Rejection::ConcurrencyLimit => "concurrency-limit",
            Rejection::TimeOut => "time-out",
            Rejection::Cancelled => "cancelled",
        }
    }
}

pub struct QueueSet {
    state: Mutex<State>,
}

struct State {
    /// Seats the level may use at once.
    limit: u32,
    kind: Limit,
    queues: Vec<Queue>,
    /// Bumped whenever the queues are rebuilt; tickets of older queues release only
    /// the set's seats.
    epoch: u64,
    /// Virtual time, in seat-seconds, and the real time it was last advanced at.
    current_r: f64,
    synced: Instant,
    seats_in_use: u32,
    executing: u32,
    waiting: u32,
    /// Seats of the waiting requests, and queues with something waiting or executing:
    /// what virtual time advances by, kept as they change.
    waiting_seats: u64,
    active: u32,
    robin: usize,
    enqueues: usize,
    next_id: u64,
}

#[derive(Default)]
struct Queue {
    waiting: VecDeque<Waiter>,
    executing: u32,
    seats_in_use: u32,
    /// The virtual time its next request may start at.
    next_dispatch_r: f64,
}

struct Waiter {
    id: u64,
    seats: u32,
    hash: u64,
    arrival_r: f64,
    sender: oneshot::Sender<Ticket>,
}

impl Waiter {
    fn work(&self) -> f64 {
        f64::from(self.seats) * SERVICE_ESTIMATE
    }
}

/// Seats held by an executing request; dropping it releases them and serves whoever
/// waits next.
pub struct Ticket {
    set: Arc<QueueSet>,
    queue: Option<(u64, usize)>,
    seats: u32,
    started: Instant,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.set.finish(self.queue, self.seats, self.started.elapsed().as_secs_f64());
    }
}

/// What became of a request at once.
pub enum Start {
    Executing(Ticket),
    Queued(Pending),
    Rejected(Rejection),
}

/// A request waiting in a queue; dropping it (the client went away) takes it out.
pub struct Pending {
    set: Arc<QueueSet>,
    id: u64,
    receiver: oneshot::Receiver<Ticket>,
}

impl Pending {
    /// Waits until the request is dispatched, or refuses it at `deadline`.
    pub async fn wait(mut self, deadline: Instant) -> Result<Ticket, Rejection> {
        match tokio::time::timeout_at(deadline, &mut self.receiver).await {
            Ok(Ok(ticket)) => Ok(ticket),
            // The level went away and its queue with it.
            Ok(Err(_)) => Err(Rejection::Cancelled),
            Err(_) => {
                if self.set.withdraw(self.id) {
                    return Err(Rejection::TimeOut);
                }
                // Dispatched at the last moment: the ticket is there.
                self.receiver.try_recv().map_err(|_| Rejection::TimeOut)
            }
        }
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        // The receiver (and a ticket in it) drops after this returns, lock released.
        self.set.withdraw(self.id);
    }
}

/// Tickets whose waiter is gone, released once the lock is let go.
type Orphans = Vec<Ticket>;

impl QueueSet {
    pub fn new(limit: u32, kind: Limit) -> Arc<QueueSet> {
        let state = State {
            limit,
            kind,
            queues: Vec::new(),
            epoch: 0,
            current_r: 0.0,
            synced: Instant::now(),
            seats_in_use: 0,
            executing: 0,
            waiting: 0,
            waiting_seats: 0,
            active: 0,
            robin: 0,
            enqueues: 0,
            next_id: 0,
        };
        let set = Arc::new(QueueSet { state: Mutex::new(state) });
        set.reconfigure(limit, kind);
        set
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        let mut state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        state.sync_time();
        state
    }

    /// Seats in use, requests executing and requests waiting.
    #[cfg(test)]
    pub fn load(&self) -> (u32, u32, u32) {
        let state = self.lock();
        (state.seats_in_use, state.executing, state.waiting)
    }

    /// A request of `seats` seats of the flow hashed `hash` arrives.
    pub fn start(self: &Arc<Self>, hash: u64, seats: u32) -> Start {
        let mut orphans = Orphans::new();
        let start = {
            let mut state = self.lock();
            match state.kind {
                Limit::Exempt => Start::Executing(state.execute(self, None, seats)),
                Limit::Reject if state.can_accommodate(seats) => {
                    Start::Executing(state.execute(self, None, seats))
                }
                Limit::Reject => Start::Rejected(Rejection::ConcurrencyLimit),
                Limit::Queue { hand_size, queue_length_limit, .. } => {
                    let index = state.choose_queue(hash, hand_size);
                    if state.seats_in_use >= state.limit
                        && state.queues[index].waiting.len() >= queue_length_limit
                    {
                        Start::Rejected(Rejection::QueueFull)
                    } else {
                        let (sender, receiver) = oneshot::channel();
                        let id = state.next_id;
                        state.next_id += 1;
                        let arrival_r = state.current_r;
                        state.enqueue(index, Waiter { id, seats, hash, arrival_r, sender });
                        state.dispatch(self, &mut orphans);
                        Start::Queued(Pending { set: self.clone(), id, receiver })
                    }
                }
            }
        };
        drop(orphans);
        match start {
            // Dispatched at once: no wait to count.
            Start::Queued(mut pending) => match pending.receiver.try_recv() {
                Ok(ticket) => Start::Executing(ticket),
                Err(_) => Start::Queued(pending),
            },
            other => other,
        }
    }

    /// Takes a waiter out of its queue; false when it is no longer waiting.
    fn withdraw(&self, id: u64) -> bool {
        let mut state = self.lock();
        let state = &mut *state;
        for queue in &mut state.queues {
            if let Some(at) = queue.waiting.iter().position(|w| w.id == id) {
                let seats = queue.waiting.remove(at).map_or(0, |w| u64::from(w.seats));
                let idle = queue.is_idle();
                state.waiting -= 1;
                state.waiting_seats -= seats;
                state.active -= u32::from(idle);
                return true;
            }
        }
        false
    }

    /// New limits from the level's (possibly changed) configuration. Waiting requests
    /// stay waiting, re-sharded if the queues change; executing ones keep their seats.
    pub fn reconfigure(self: &Arc<Self>, limit: u32, kind: Limit) {
        let mut orphans = Orphans::new();
        {
            let mut state = self.lock();
            state.limit = limit;
            let queues = match kind {
                Limit::Queue { queues, .. } => queues,
                _ => 0,
            };
            if state.kind != kind || state.queues.len() != queues {
                state.kind = kind;
                state.epoch += 1;
                let old = std::mem::take(&mut state.queues);
                state.queues = (0..queues).map(|_| Queue::default()).collect();
                let mut waiters: Vec<Waiter> = old.into_iter().flat_map(|q| q.waiting).collect();
                waiters.sort_by(|a, b| a.arrival_r.total_cmp(&b.arrival_r));
                (state.waiting, state.waiting_seats) = (0, 0);
                // Executing requests of the old queues no longer belong to any.
                state.active = 0;
                for waiter in waiters {
                    match kind {
                        Limit::Queue { hand_size, .. } => {
                            let index = state.choose_queue(waiter.hash, hand_size);
                            state.enqueue(index, waiter);
                        }
                        Limit::Exempt => {
                            let ticket = state.execute(self, None, waiter.seats);
                            if let Err(ticket) = waiter.sender.send(ticket) {
                                orphans.push(ticket);
                            }
                        }
                        // Refused: its sender drops, the waiter hears it.
                        Limit::Reject => {}
                    }
                }
            }
            state.dispatch(self, &mut orphans);
        }
        drop(orphans);
    }

    fn finish(self: &Arc<Self>, queue: Option<(u64, usize)>, seats: u32, took: f64) {
        let mut orphans = Orphans::new();
        {
            let mut state = self.lock();
            state.executing -= 1;
            state.seats_in_use -= seats;
            let epoch = state.epoch;
            if let Some((at_epoch, index)) = queue
                && at_epoch == epoch
                && let Some(q) = state.queues.get_mut(index)
            {
                q.executing -= 1;
                q.seats_in_use -= seats;
                // The guess made at dispatch, corrected by what it really took.
                q.next_dispatch_r += f64::from(seats) * (took - SERVICE_ESTIMATE);
                q.bound();
                let idle = q.is_idle();
                state.active -= u32::from(idle);
            }
            state.dispatch(self, &mut orphans);
        }
        drop(orphans);
    }
}

impl State {
    /// Advances virtual time: the seats in use or wanted (at most the limit), shared by
    /// the queues with something waiting or executing.
    fn sync_time(&mut self) {
        let now = Instant::now();
        let elapsed = now.duration_since(self.synced).as_secs_f64();
        self.synced = now;
        if self.active > 0 {
            let requested = u64::from(self.seats_in_use) + self.waiting_seats;
            let rate = (requested as f64).min(f64::from(self.limit)) / f64::from(self.active);
            self.current_r += rate * elapsed;
        }
    }

    fn can_accommodate(&self, seats: u32) -> bool {
        if seats > self.limit {
            return self.executing == 0;
        }
        self.seats_in_use + seats <= self.limit
    }

    fn execute(&mut self, set: &Arc<QueueSet>, queue: Option<usize>, seats: u32) -> Ticket {
        self.executing += 1;
        self.seats_in_use += seats;
        if let Some(index) = queue {
            let q = &mut self.queues[index];
            q.executing += 1;
            q.seats_in_use += seats;
        }
        Ticket {
            set: set.clone(),
            queue: queue.map(|index| (self.epoch, index)),
            seats,
            started: Instant::now(),
        }
    }

    /// Of the flow's hand of queues, the one with the least waiting work; ties go to the
    /// first looked at, the starting point turning with each arrival.
    fn choose_queue(&mut self, hash: u64, hand_size: usize) -> usize {
        let hand = deal(hash, self.queues.len(), hand_size);
        let offset = self.enqueues % hand.len();
        self.enqueues += 1;
        let mut best = hand[offset];
        let mut least = u64::MAX;
        for i in 0..hand.len() {
            let index = hand[(offset + i) % hand.len()];
            let work: u64 = self.queues[index].waiting.iter().map(|w| u64::from(w.seats)).sum();
            if work < least {
                (least, best) = (work, index);
            }
        }
        best
    }

    fn enqueue(&mut self, index: usize, waiter: Waiter) {
        let current_r = self.current_r;
        let queue = &mut self.queues[index];
        if queue.is_idle() {
            queue.next_dispatch_r = current_r;
            self.active += 1;
        }
        self.waiting_seats += u64::from(waiter.seats);
        queue.waiting.push_back(waiter);
        self.waiting += 1;
    }

    /// Serves waiting requests while their seats fit: each time the queue whose head
    /// would finish first in virtual time.
    fn dispatch(&mut self, set: &Arc<QueueSet>, orphans: &mut Orphans) {
        while self.waiting > 0 {
            let count = self.queues.len();
            let mut chosen: Option<(usize, f64)> = None;
            for step in 1..=count {
                let index = (self.robin + step) % count;
                let queue = &self.queues[index];
                let Some(head) = queue.waiting.front() else { continue };
                let finish = queue.next_dispatch_r + head.work();
                if chosen.is_none_or(|(_, best)| finish < best) {
                    chosen = Some((index, finish));
                }
            }
            let Some((index, _)) = chosen else { return };
            let seats = self.queues[index].waiting.front().map_or(1, |w| w.seats);
            if !self.can_accommodate(seats) {
                return;
            }
            let Some(waiter) = self.queues[index].waiting.pop_front() else { return };
            self.waiting -= 1;
            self.waiting_seats -= u64::from(waiter.seats);
            self.robin = index;
            let ticket = self.execute(set, Some(index), waiter.seats);
            let queue = &mut self.queues[index];
            queue.next_dispatch_r += waiter.work();
            queue.bound();
            if let Err(ticket) = waiter.sender.send(ticket) {
                orphans.push(ticket);
            }
        }
    }
}

impl Queue {
    fn is_idle(&self) -> bool {
        self.waiting.is_empty() && self.executing == 0
    }

    /// A queue never starts its next request before that request arrived (upstream's
    /// anti-windup).
    fn bound(&mut self) {
        if let Some(head) = self.waiting.front()
            && self.next_dispatch_r < head.arrival_r
        {
            self.next_dispatch_r = head.arrival_r;
        }
    }
}

/// Shuffle sharding: `hand_size` distinct queues out of `deck`, from the hash's digits
/// in the mixed radix `deck, deck-1, …`.
fn deal(hash: u64, deck: usize, hand_size: usize) -> Vec<usize> {
    let hand_size = hand_size.clamp(1, deck.max(1));
    let mut remaining = hash;
    let mut picked: Vec<usize> = Vec::with_capacity(hand_size);
    for i in 0..hand_size {
        let left = (deck - i) as u64;
        let mut nth = (remaining % left) as usize;
        remaining /= left;
        // The nth card not yet dealt.
        let mut card = 0;
        loop {
            if !picked.contains(&card) {
                if nth == 0 {
                    break;
                }
                nth -= 1;
            }
            card += 1;
        }
        picked.push(card);
    }
    picked
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn queued(queues: usize, hand_size: usize, queue_length_limit: usize) -> Limit {
        Limit::Queue { queues, hand_size, queue_length_limit }
    }

    fn executing(start: Start) -> Ticket {
        match start {
            Start::Executing(ticket) => ticket,
            _ => panic!("expected to execute at once"),
        }
    }

    fn pending(start: Start) -> Pending {
        match start {
            Start::Queued(pending) => pending,
            _ => panic!("expected to wait"),
        }
    }

    fn rejected(start: Start) -> Rejection {
        match start {
            Start::Rejected(why) => why,
            _ => panic!("expected a rejection"),
        }
    }

    #[test]
    fn hands_hold_distinct_queues_within_the_deck() {
        for hash in [0, 1, 7, u64::MAX, 0xdead_beef_cafe] {
            let hand = deal(hash, 64, 8);
            assert_eq!(hand.len(), 8);
            let mut sorted = hand.clone();
            sorted.sort_unstable();
            sorted.dedup();
            assert_eq!(sorted.len(), 8, "{hand:?}");
            assert!(hand.iter().all(|&q| q < 64));
        }
        assert_eq!(deal(5, 1, 1), vec![0]);
        // Different flows get different hands.
        assert_ne!(deal(1, 64, 8), deal(2, 64, 8));
    }

    #[tokio::test(start_paused = true)]
    async fn seats_are_never_handed_out_beyond_the_limit() {
        let set = QueueSet::new(2, queued(4, 2, 10));
        let a = executing(set.start(1, 1));
        let b = executing(set.start(2, 1));
        let c = pending(set.start(3, 1));
        assert_eq!(set.load(), (2, 2, 1));
        drop(a);
        let c = c.wait(Instant::now() + Duration::from_secs(1)).await.expect("served");
        assert_eq!(set.load(), (2, 2, 0));
        drop((b, c));
        assert_eq!(set.load(), (0, 0, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_queue_refuses_and_a_long_wait_times_out() {
        let set = QueueSet::new(1, queued(1, 1, 1));
        let _running = executing(set.start(9, 1));
        let waiting = pending(set.start(9, 1));
        assert_eq!(rejected(set.start(9, 1)), Rejection::QueueFull);
        let waited = waiting.wait(Instant::now() + Duration::from_secs(15)).await;
        assert_eq!(waited.err(), Some(Rejection::TimeOut));
        // Gone from the queue: the next one has room again.
        assert_eq!(set.load(), (1, 1, 0));
        drop(pending(set.start(9, 1)));
        assert_eq!(set.load(), (1, 1, 0), "a waiter dropped by its client is withdrawn");
    }

    #[tokio::test(start_paused = true)]
    async fn reject_levels_refuse_at_once_and_exempt_ones_never() {
        let set = QueueSet::new(1, Limit::Reject);
        let held = executing(set.start(0, 1));
        assert_eq!(rejected(set.start(0, 1)), Rejection::ConcurrencyLimit);
        drop(held);
        drop(executing(set.start(0, 1)));
        let exempt = QueueSet::new(0, Limit::Exempt);
        let all: Vec<Ticket> = (0..50).map(|i| executing(exempt.start(i, 1))).collect();
        assert_eq!(exempt.load(), (50, 50, 0));
        drop(all);
        assert_eq!(exempt.load(), (0, 0, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_wider_than_the_limit_runs_alone() {
        let set = QueueSet::new(2, queued(1, 1, 10));
        let wide = executing(set.start(0, 5));
        let next = pending(set.start(0, 1));
        drop(wide);
        let next = next.wait(Instant::now() + Duration::from_secs(1)).await.expect("served");
        drop(next);
    }

    /// A flow that floods the level does not starve another: with one seat, the other
    /// flow's request goes ahead of the flood's backlog.
    #[tokio::test(start_paused = true)]
    async fn a_flooding_flow_waits_behind_a_light_one() {
        // Two queues, hands of one: flows 0 and 1 land in different queues.
        let set = QueueSet::new(1, queued(2, 1, 100));
        let (heavy, light) = (0u64, 1u64);
        assert_ne!(deal(heavy, 2, 1), deal(light, 2, 1));
        let mut running = executing(set.start(heavy, 1));
        let flood: Vec<Pending> = (0..20).map(|_| pending(set.start(heavy, 1))).collect();
        tokio::time::advance(Duration::from_millis(10)).await;
        let light_one = pending(set.start(light, 1));
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut served_before_light = 0;
        let mut flood = flood.into_iter();
        let light_ticket = tokio::spawn(light_one.wait(deadline));
        loop {
            tokio::time::advance(Duration::from_millis(3)).await;
            drop(running);
            tokio::task::yield_now().await;
            if light_ticket.is_finished() {
                break;
            }
            let next = flood.next().expect("the light request is served before the flood ends");
            running = next.wait(deadline).await.expect("served");
            served_before_light += 1;
        }
        assert!(served_before_light <= 1, "{served_before_light} flood requests went first");
        drop(light_ticket.await.expect("joined").expect("served"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_new_configuration_keeps_the_waiting_and_uses_the_new_limit() {
        let set = QueueSet::new(1, queued(8, 2, 10));
        let held = executing(set.start(1, 1));
        let waiters: Vec<Pending> = (0..3).map(|i| pending(set.start(i, 1))).collect();
        set.reconfigure(4, queued(16, 4, 10));
        let deadline = Instant::now() + Duration::from_secs(1);
        let mut tickets = Vec::new();
        for waiter in waiters {
            tickets.push(waiter.wait(deadline).await.expect("served under the new limit"));
        }
        assert_eq!(set.load(), (4, 4, 0));
        drop((held, tickets));
        assert_eq!(set.load(), (0, 0, 0));
    }
}
