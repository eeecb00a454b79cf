//! Micro-benchmarks of the hub's publish path: a `plexus_core::Node` (in-memory engine) with N
//! subscribers of one channel, each with a counting wire format; one publication per
//! iteration, from `Node::publish` to a frame in every subscriber's outbox. The outboxes are
//! drained outside the timed part, as the connections' writers would.
//!
//! Before the timings it prints the allocations of one publish at several N and the slope:
//! allocations per extra subscriber (the design's target is zero: the frame is encoded once
//! and shared as a refcounted `Bytes`). A counting global allocator wraps divan's allocation
//! profiler, which also adds allocation columns to the table.
//!
//! `cargo bench -p plexus-loadgen --bench hub`

use bytes::Bytes;
use divan::{AllocProfiler, Bencher};
use futures_util::FutureExt;
use plexus_core::auth::{AuthConfig, UpgradeRequest};
use plexus_core::model::{Event, WireFormat};
use plexus_core::session::SubscribeRequest;
use plexus_core::{ChannelPolicy, Limits, Node, Payload, Session};
use std::alloc::{GlobalAlloc, Layout};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

static PROFILER: AllocProfiler = AllocProfiler::system();
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

/// Counts allocations (including reallocations) and hands everything to divan's profiler.
struct Counting;

// SAFETY: every call is forwarded unchanged to divan's allocator.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { PROFILER.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { PROFILER.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { PROFILER.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { PROFILER.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// A wire format that counts the publications it encodes and returns the same static frame
/// for every event.
struct CountingFormat {
    encodes: AtomicU64,
}

impl WireFormat for CountingFormat {
    fn id(&self) -> usize {
        2
    }
    fn encode(&self, event: &Event<'_>) -> Option<Bytes> {
        if matches!(event, Event::Publication(_)) {
            self.encodes.fetch_add(1, Ordering::Relaxed);
        }
        Some(Bytes::from_static(b"{\"push\":\"pub\"}"))
    }
}

const CHANNEL: &str = "bench";

struct Setup {
    /// Kept alive for the node's tasks (heartbeat), which it never drives.
    _runtime: tokio::runtime::Runtime,
    node: Node,
    sessions: Vec<Session>,
    format: Arc<CountingFormat>,
    payload: Payload,
    drained: Vec<Bytes>,
}

impl Setup {
    fn new(subscribers: usize) -> Setup {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let _guard = runtime.enter();
        let limits = Limits {
            max_subscriptions: 4,
            ..Limits::default()
        };
        let node = Node::builder()
            .channels(ChannelPolicy::open())
            .auth(AuthConfig {
                anonymous: true,
                ..AuthConfig::default()
            })
            .limits(limits)
            .build();
        let format = Arc::new(CountingFormat {
            encodes: AtomicU64::new(0),
        });
        let upgrade = Arc::new(UpgradeRequest::default());
        let sessions = (0..subscribers)
            .map(|_| {
                let mut session =
                    Session::open(&node, format.clone(), upgrade.clone(), None).expect("session");
                let request = SubscribeRequest {
                    channel: CHANNEL.into(),
                    ..SubscribeRequest::default()
                };
                // Dropping the subscription releases the channel's live publications to it.
                drop(
                    runtime
                        .block_on(session.subscribe(request))
                        .expect("subscribed"),
                );
                session
            })
            .collect();
        let mut setup = Setup {
            _runtime: runtime,
            node,
            sessions,
            format,
            payload: Payload::from_json_str(r#"{"text":"hello, subscribers"}"#).expect("json"),
            drained: Vec::with_capacity(16),
        };
        // The hello-less sessions have empty outboxes; one publish sizes every queue.
        setup.publish();
        setup.drain();
        setup
    }

    /// One publication through the node; the in-memory engine completes it without waiting.
    fn publish(&self) {
        self.node
            .publish(CHANNEL, self.payload.clone())
            .now_or_never()
            .expect("the in-memory engine publishes without waiting")
            .expect("published");
    }

    fn drain(&mut self) {
        for session in &self.sessions {
            session
                .connection()
                .outbox()
                .drain(&mut self.drained, usize::MAX);
            self.drained.clear();
        }
    }
}

const SUBSCRIBERS: [usize; 5] = [1, 10, 100, 1000, 10_000];

#[divan::bench(args = SUBSCRIBERS, sample_size = 1, sample_count = 2000)]
fn publish(bencher: Bencher, subscribers: usize) {
    let setup = std::cell::RefCell::new(Setup::new(subscribers));
    bencher
        .with_inputs(|| setup.borrow_mut().drain())
        .bench_local_values(|()| setup.borrow().publish());
}

/// Allocations of one publish to `subscribers`, averaged over many publishes.
fn allocations_per_publish(subscribers: usize) -> f64 {
    let mut setup = Setup::new(subscribers);
    const ROUNDS: u64 = 200;
    let mut total = 0u64;
    for _ in 0..ROUNDS {
        let before = ALLOCATIONS.load(Ordering::Relaxed);
        setup.publish();
        total += ALLOCATIONS.load(Ordering::Relaxed) - before;
        setup.drain();
    }
    let encodes = setup.format.encodes.load(Ordering::Relaxed);
    assert_eq!(
        encodes,
        ROUNDS + 1,
        "one encode per publication, whatever the number of subscribers"
    );
    total as f64 / ROUNDS as f64
}

fn main() {
    println!("hub publish path: allocations per publish");
    let mut per_publish = Vec::new();
    for n in SUBSCRIBERS {
        let a = allocations_per_publish(n);
        println!("  {n:>6} subscribers: {a:.2}");
        per_publish.push((n, a));
    }
    let (first, last) = (per_publish[0], per_publish[per_publish.len() - 1]);
    println!(
        "  allocations per extra subscriber: {:.4}\n",
        (last.1 - first.1) / (last.0 - first.0) as f64
    );
    divan::main();
}
