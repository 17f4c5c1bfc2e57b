//! Bounds on admission work, so that memory stays under the pod's limit and the probes
//! stay fast whatever clients send:
//! - request bodies being received or held count against `--max-inflight-bytes` (twice
//!   their length: the chunks and the joined body), reserved from `Content-Length`
//!   before a byte of the body is read;
//! - a received body is scanned once (no allocation) for an upper bound of the memory
//!   that decoding and answering it takes ([`estimate`]), which counts against
//!   `--max-work-bytes`; a review whose bound alone is larger is refused (413);
//! - at most `--workers` reviews are decoded at once, each on a blocking thread, never on
//!   the async workers that answer `/healthz` and `/readyz`;
//! - a request that can't get room within `--queue-timeout` is refused with 429 at once
//!   rather than queued without bound.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The work limits (what the flags become).
#[derive(Debug, Clone, Copy)]
pub struct WorkLimits {
    /// Largest request body (bytes).
    pub max_body_bytes: usize,
    /// Request bodies in flight at once, counted twice (bytes).
    pub max_inflight_bytes: usize,
    /// Estimated decoding memory of the reviews being answered at once (bytes).
    pub max_work_bytes: usize,
    /// Reviews decoded at once (threads).
    pub workers: usize,
    /// Longest wait for room before a 429.
    pub queue_timeout: Duration,
}

impl Default for WorkLimits {
    fn default() -> Self {
        Self {
            max_body_bytes: 4 << 20,
            max_inflight_bytes: 16 << 20,
            max_work_bytes: 48 << 20,
            workers: default_workers(),
            queue_timeout: Duration::from_secs(1),
        }
    }
}

/// One worker per CPU the process may run on.
pub fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Why a request was refused before its review was decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Can never fit (HTTP 413).
    TooLarge(String),
    /// No room now (HTTP 429).
    Busy(String),
}

/// The semaphores behind [`WorkLimits`].
#[derive(Debug, Clone)]
pub struct Gate {
    limits: WorkLimits,
    body: Arc<Semaphore>,
    work: Arc<Semaphore>,
    workers: Arc<Semaphore>,
}

/// Room held for one request; released when dropped.
#[derive(Debug)]
pub struct Held {
    _permits: Vec<OwnedSemaphorePermit>,
    /// The bound of the decoding memory, bytes (0 until [`Gate::admit_work`]).
    pub work_bytes: usize,
}

fn kib(bytes: usize) -> u32 {
    u32::try_from(bytes.div_ceil(1024)).unwrap_or(u32::MAX)
}

impl Gate {
    /// A gate for these limits.
    pub fn new(limits: WorkLimits) -> Self {
        Self {
            limits,
            body: Arc::new(Semaphore::new(kib(limits.max_inflight_bytes) as usize)),
            work: Arc::new(Semaphore::new(kib(limits.max_work_bytes) as usize)),
            workers: Arc::new(Semaphore::new(limits.workers.max(1))),
        }
    }

    /// The limits.
    pub fn limits(&self) -> WorkLimits {
        self.limits
    }

    /// Reserves room to receive a body of `content_length` (unknown: the largest allowed).
    pub async fn admit_body(&self, content_length: Option<usize>) -> Result<Held, Refusal> {
        let max = self.limits.max_body_bytes;
        if let Some(len) = content_length
            && len > max
        {
            return Err(Refusal::TooLarge(format!(
                "request body of {len} bytes is over the limit of {max} bytes (--max-body-bytes)"
            )));
        }
        let need = kib(content_length.unwrap_or(max).saturating_mul(2))
            .clamp(1, kib(self.limits.max_inflight_bytes).max(1));
        let permit = self.acquire(&self.body, need, "request bodies").await?;
        Ok(Held {
            _permits: vec![permit],
            work_bytes: 0,
        })
    }

    /// Reserves room to decode and answer `body` (a thread and its memory bound).
    pub async fn admit_work(&self, held: &mut Held, body: &[u8]) -> Result<(), Refusal> {
        let bound = estimate(body);
        if bound > self.limits.max_work_bytes {
            return Err(Refusal::TooLarge(format!(
                "decoding this review could take up to {} MiB ({} bytes of JSON with {} values), more than --max-work-bytes ({} MiB)",
                bound >> 20,
                body.len(),
                Shape::of(body).values(),
                self.limits.max_work_bytes >> 20
            )));
        }
        let permit = self
            .acquire(&self.work, kib(bound).max(1), "reviews being decoded")
            .await?;
        held._permits.push(permit);
        let worker = self.acquire(&self.workers, 1, "workers").await?;
        held._permits.push(worker);
        held.work_bytes = bound;
        Ok(())
    }

    async fn acquire(
        &self,
        sem: &Arc<Semaphore>,
        n: u32,
        what: &str,
    ) -> Result<OwnedSemaphorePermit, Refusal> {
        if let Ok(p) = sem.clone().try_acquire_many_owned(n) {
            return Ok(p);
        }
        match tokio::time::timeout(self.limits.queue_timeout, sem.clone().acquire_many_owned(n))
            .await
        {
            Ok(Ok(p)) => Ok(p),
            _ => Err(Refusal::Busy(format!(
                "busy: no room for this request among the {what} in flight within {:?}; retry",
                self.limits.queue_timeout
            ))),
        }
    }
}

/// What a JSON text's structure says about the memory of its decoded form, read in one
/// pass without allocating.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Shape {
    /// Objects and arrays.
    pub containers: usize,
    /// Values inside objects and arrays.
    pub values: usize,
    /// Strings (keys included).
    pub strings: usize,
    /// Bytes the decoded form allocates, as the system allocator counts them (see
    /// [`chunk`]): strings, object entries and index tables, array slots, with room for
    /// growth by doubling and for the moment a growing block is copied.
    pub decoded_bytes: usize,
}

/// Size of `serde_json::Value` (with `preserve_order`, 72 bytes; checked in tests).
pub const VALUE_BYTES: usize = 72;
/// Size of one object entry: the key's hash, the key (`String`) and the value.
pub const ENTRY_BYTES: usize = 8 + 24 + VALUE_BYTES;

/// What an allocation of `n` bytes takes from glibc's malloc: a header and rounding to
/// 16 bytes, at least 32.
pub const fn chunk(n: usize) -> usize {
    let c = (n + 8 + 15) & !15;
    if c < 32 { 32 } else { c }
}

const MAX_DEPTH: usize = 256;

impl Shape {
    /// Scans `body`.
    pub fn of(body: &[u8]) -> Self {
        // Per open container: is it an object, how many commas, anything inside yet.
        let mut object = [false; MAX_DEPTH];
        let mut commas = [0usize; MAX_DEPTH];
        let mut nonempty = [false; MAX_DEPTH];
        let mut depth = 0usize;
        let mut s = Self::default();
        let mut i = 0;
        let n = body.len();
        let mark = |depth: usize, nonempty: &mut [bool; MAX_DEPTH]| {
            if (1..=MAX_DEPTH).contains(&depth) {
                nonempty[depth - 1] = true;
            }
        };
        while i < n {
            match body[i] {
                b'"' => {
                    mark(depth, &mut nonempty);
                    let start = i + 1;
                    i += 1;
                    while i < n {
                        match body[i] {
                            b'\\' => i += 2,
                            b'"' => break,
                            _ => i += 1,
                        }
                    }
                    s.strings += 1;
                    let len = i.min(n).saturating_sub(start);
                    if len > 0 {
                        s.decoded_bytes = s.decoded_bytes.saturating_add(chunk(len));
                    }
                }
                c @ (b'{' | b'[') => {
                    mark(depth, &mut nonempty);
                    depth += 1;
                    s.containers += 1;
                    if depth <= MAX_DEPTH {
                        object[depth - 1] = c == b'{';
                        commas[depth - 1] = 0;
                        nonempty[depth - 1] = false;
                    }
                }
                b'}' | b']' => {
                    if (1..=MAX_DEPTH).contains(&depth) && nonempty[depth - 1] {
                        let items = commas[depth - 1].saturating_add(1);
                        s.values = s.values.saturating_add(items);
                        let cost = if object[depth - 1] {
                            // Entries grow like a Vec; the index table has at least 4
                            // buckets of 8 bytes plus a control byte each and a group.
                            let cap = items.next_power_of_two().max(4);
                            chunk(cap.saturating_mul(ENTRY_BYTES))
                                + chunk(cap.saturating_mul(2).saturating_mul(9) + 16)
                        } else {
                            chunk(items.next_power_of_two().max(4).saturating_mul(VALUE_BYTES))
                        };
                        // Growing by reallocation holds the old and the new block at once.
                        s.decoded_bytes = s.decoded_bytes.saturating_add(cost + cost / 2);
                    }
                    depth = depth.saturating_sub(1);
                }
                b',' => {
                    if (1..=MAX_DEPTH).contains(&depth) {
                        commas[depth - 1] += 1;
                    }
                }
                b' ' | b'\t' | b'\n' | b'\r' | b':' => {}
                _ => mark(depth, &mut nonempty),
            }
            i += 1;
        }
        s
    }

    /// The number of JSON values (an upper bound).
    pub fn values(&self) -> usize {
        self.values + 1
    }
}

/// An upper bound of the memory that decoding `body` and answering it takes (bytes):
/// the decoded form twice (the injector copies what it changes, and the answer's patch
/// repeats it), the text twice more (the answer), and a constant. Checked against the
/// real allocations for many shapes, hostile ones included, in `tests/work_memory.rs`.
pub fn estimate(body: &[u8]) -> usize {
    let s = Shape::of(body);
    (64 << 10) + body.len().saturating_mul(2) + s.decoded_bytes.saturating_mul(2)
}

/// Hands freed memory back to the system after a large review (glibc keeps it in its
/// arenas otherwise, and the resident size would stay at the high-water mark).
#[allow(unsafe_code)]
pub fn release_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        unsafe extern "C" {
            fn malloc_trim(pad: usize) -> i32;
        }
        // SAFETY: malloc_trim only releases free memory of the allocator's own arenas.
        unsafe {
            malloc_trim(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shape_skips_strings() {
        let s = Shape::of(br#"{"a":[1,2,{"b":"x,:{[\"y"}],"c":"\\"}"#);
        assert_eq!(s.containers, 3);
        assert_eq!(s.strings, 5);
        // 2 members in the outer object, 3 in the array, 1 in the inner object.
        assert_eq!(s.values, 6);
        let empty = Shape::of(b"[{}, [], {}]");
        assert_eq!(empty.values, 3);
        assert_eq!(empty.decoded_bytes, chunk(4 * VALUE_BYTES) * 3 / 2);
    }

    #[tokio::test]
    async fn gate_refuses_what_never_fits_and_queues_the_rest() {
        let gate = Gate::new(WorkLimits {
            max_body_bytes: 1 << 20,
            max_inflight_bytes: 2 << 20,
            max_work_bytes: 8 << 20,
            workers: 1,
            queue_timeout: Duration::from_millis(50),
        });
        assert!(matches!(
            gate.admit_body(Some(2 << 20)).await,
            Err(Refusal::TooLarge(_))
        ));
        let a = gate.admit_body(Some(1 << 20)).await.unwrap();
        // The first body holds all the room (twice its size): the next waits, then 429.
        let t = std::time::Instant::now();
        assert!(matches!(
            gate.admit_body(Some(10)).await,
            Err(Refusal::Busy(_))
        ));
        assert!(t.elapsed() >= Duration::from_millis(40));
        drop(a);
        let mut b = gate.admit_body(Some(100)).await.unwrap();
        gate.admit_work(&mut b, b"{}").await.unwrap();
        let mut c = gate.admit_body(Some(100)).await.unwrap();
        // One worker: busy.
        assert!(matches!(
            gate.admit_work(&mut c, b"{}").await,
            Err(Refusal::Busy(_))
        ));
        drop(b);
        gate.admit_work(&mut c, b"{}").await.unwrap();
        let dense = "[".to_string() + &"{\"a\":1},".repeat(50_000) + "{}]";
        assert!(matches!(
            gate.admit_work(&mut c, dense.as_bytes()).await,
            Err(Refusal::TooLarge(_))
        ));
    }
}
