//! A fixed pool of worker threads that run one job at a time, split by the caller.
//!
//! The pool starts once, on first use, with the thread count chosen by [`set_threads`]; after
//! that a job costs no thread start-up and no allocation. A job is a number of units and a
//! closure; [`run`] hands the units out one at a time to whichever thread is free, the caller's
//! included, so a worker that the OS has descheduled (a busy board) delays nobody. Between jobs
//! a worker spins for a short while (a training step issues dozens of jobs microseconds apart)
//! and then parks until the next one.
//!
//! A job that finds the pool busy (another thread of the process is inside [`run`], e.g. tests
//! running in parallel) runs on the calling thread alone. Every user makes each unit's result
//! independent of which thread runs it, so results never depend on the thread count.

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::thread::{self, Thread};

/// Most threads the pool will run, the caller's included (an i.MX8QM has 6 cores, a host 8+).
pub const MAX_THREADS: usize = 8;

/// How long a worker spins between jobs before it parks, in spin-loop hints (a fraction of a
/// millisecond: longer than the gaps between the jobs of a training step).
const SPINS_BEFORE_PARK: usize = 1 << 14;

/// The thread count asked for before the pool started (0: not asked, use the cores).
static REQUESTED: AtomicUsize = AtomicUsize::new(0);
static POOL: OnceLock<Pool> = OnceLock::new();

/// Sets the number of threads (the caller's included) the pool will run, clamped to
/// 1..=[`MAX_THREADS`]. Returns the count it will use, or `None` if the pool already started.
pub fn set_threads(n: usize) -> Option<usize> {
    if POOL.get().is_some() {
        return None;
    }
    let n = n.clamp(1, MAX_THREADS);
    REQUESTED.store(n, Ordering::Relaxed);
    Some(n)
}

/// Number of threads that take part in jobs (starts the pool if needed).
pub fn threads() -> usize {
    pool().threads
}

/// Runs `job(u)` once for every unit `u` in `0..units` and returns when all have run. Units
/// are handed out one at a time to whichever thread asks next, the caller's included: a worker
/// the OS has not scheduled simply takes none, and nobody waits for it. With one thread, or when
/// another thread of the process is inside `run`, the caller runs every unit itself. A panic in
/// any unit is raised again here.
pub fn run(units: usize, job: &(dyn Fn(usize) + Sync)) {
    let pool = pool();
    if pool.threads == 1 || units <= 1 {
        return (0..units).for_each(job);
    }
    // Not while running inline above: the lock guards the workers' job slot only.
    let Ok(guard) = pool.busy.try_lock() else {
        return (0..units).for_each(job);
    };
    let shared = pool.shared;
    // SAFETY: only the holder of `busy` writes `job`, and workers read it only while entered
    // (state's count > 0 under the current epoch), which ends before `run` returns: the
    // borrowed closure outlives every use. Its lifetime is erased to store it.
    unsafe {
        *shared.job.get() = Some(std::mem::transmute::<
            &(dyn Fn(usize) + Sync),
            &'static (dyn Fn(usize) + Sync),
        >(job));
    }
    shared.units.store(units, Ordering::Relaxed);
    shared.next.store(0, Ordering::Relaxed);
    let epoch = (shared.state.load(Ordering::Relaxed) >> EPOCH_SHIFT) + 1;
    shared.state.store(epoch << EPOCH_SHIFT, Ordering::SeqCst);
    for (w, thread) in pool.workers.iter().enumerate() {
        if shared.sleeping[w].load(Ordering::SeqCst) {
            thread.unpark();
        }
    }
    let mine = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| shared.take_units(job)));
    // Close the job to late workers, then wait for those inside it to finish their unit.
    shared.state.fetch_or(CLOSED, Ordering::SeqCst);
    let mut spins = 0usize;
    while shared.state.load(Ordering::Acquire) & COUNT != 0 {
        spins += 1;
        if spins < SPINS_BEFORE_PARK {
            std::hint::spin_loop();
        } else {
            thread::yield_now();
        }
    }
    // SAFETY: no worker is inside the job and none can enter it (closed); we hold `busy`.
    unsafe { *shared.job.get() = None };
    let worker_panicked = shared.panicked.swap(false, Ordering::Relaxed);
    drop(guard);
    if let Err(panic) = mine {
        std::panic::resume_unwind(panic);
    }
    assert!(!worker_panicked, "a worker thread panicked");
}

/// `Shared::state`: the job's epoch above this bit, the closed flag, and how many workers are
/// inside the job.
const EPOCH_SHIFT: u32 = 32;
const CLOSED: u64 = 1 << 31;
const COUNT: u64 = CLOSED - 1;

struct Pool {
    threads: usize,
    shared: &'static Shared,
    workers: Vec<Thread>,
    busy: Mutex<()>,
}

struct Shared {
    job: UnsafeCell<Option<&'static (dyn Fn(usize) + Sync)>>,
    /// Epoch, closed flag and count of workers inside the job (see the constants above).
    state: AtomicU64,
    /// Units of the current job, and the next one nobody has taken.
    units: AtomicUsize,
    next: AtomicUsize,
    sleeping: Vec<AtomicBool>,
    panicked: AtomicBool,
}

// SAFETY: `job` is written only by the holder of `Pool::busy` while no worker is inside a job,
// and read by workers only while inside one (the state protocol of `run` and `work`).
unsafe impl Sync for Shared {}

impl Shared {
    /// Runs units of the current job until none is left.
    fn take_units(&self, job: &(dyn Fn(usize) + Sync)) {
        let units = self.units.load(Ordering::Relaxed);
        loop {
            let u = self.next.fetch_add(1, Ordering::Relaxed);
            if u >= units {
                return;
            }
            job(u);
        }
    }

    /// Enters the job of `epoch` unless it is closed or over.
    fn enter(&self, epoch: u64) -> bool {
        let mut s = self.state.load(Ordering::Acquire);
        loop {
            if s >> EPOCH_SHIFT != epoch || s & CLOSED != 0 {
                return false;
            }
            match self
                .state
                .compare_exchange_weak(s, s + 1, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return true,
                Err(now) => s = now,
            }
        }
    }
}

fn pool() -> &'static Pool {
    POOL.get_or_init(|| {
        let n = match REQUESTED.load(Ordering::Relaxed) {
            0 => thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
        .clamp(1, MAX_THREADS);
        let shared: &'static Shared = Box::leak(Box::new(Shared {
            job: UnsafeCell::new(None),
            state: AtomicU64::new(0),
            units: AtomicUsize::new(0),
            next: AtomicUsize::new(0),
            sleeping: (1..n).map(|_| AtomicBool::new(false)).collect(),
            panicked: AtomicBool::new(false),
        }));
        let mut workers = Vec::with_capacity(n - 1);
        for t in 1..n {
            let spawned = thread::Builder::new()
                .name(format!("mnist-mlp-{t}"))
                .spawn(move || work(shared, t - 1));
            match spawned {
                Ok(handle) => workers.push(handle.thread().clone()),
                Err(e) => {
                    log::warn!("could not start worker thread {t}: {e}; using {t} thread(s)");
                    break;
                }
            }
        }
        Pool {
            threads: workers.len() + 1,
            shared,
            workers,
            busy: Mutex::new(()),
        }
    })
}

/// A worker's life: wait for the next epoch, take units while there are any, leave.
fn work(shared: &'static Shared, w: usize) {
    let mut seen = 0u64;
    loop {
        let mut spins = 0usize;
        let epoch = loop {
            let epoch = shared.state.load(Ordering::Acquire) >> EPOCH_SHIFT;
            if epoch != seen {
                break epoch;
            }
            spins += 1;
            if spins < SPINS_BEFORE_PARK {
                std::hint::spin_loop();
                continue;
            }
            shared.sleeping[w].store(true, Ordering::SeqCst);
            if shared.state.load(Ordering::SeqCst) >> EPOCH_SHIFT == seen {
                thread::park();
            }
            shared.sleeping[w].store(false, Ordering::SeqCst);
        };
        seen = epoch;
        if !shared.enter(epoch) {
            continue;
        }
        // SAFETY: entered, so `run` has stored this job and will not clear it before we leave.
        if let Some(job) = unsafe { *shared.job.get() } {
            let run = std::panic::AssertUnwindSafe(|| shared.take_units(job));
            if std::panic::catch_unwind(run).is_err() {
                shared.panicked.store(true, Ordering::Relaxed);
            }
        }
        shared.state.fetch_sub(1, Ordering::Release);
    }
}

/// A mutable slice that the units of one job write in disjoint parts.
pub struct SharedMut<'a, T> {
    ptr: *mut T,
    len: usize,
    _borrow: std::marker::PhantomData<&'a mut [T]>,
}

// SAFETY: handing out parts is `unsafe` (`part`), and its contract makes the parts disjoint, so
// sharing the wrapper between threads is as safe as sending `&mut` parts of a `T: Send` slice.
unsafe impl<T: Send> Sync for SharedMut<'_, T> {}
unsafe impl<T: Send> Send for SharedMut<'_, T> {}

impl<'a, T> SharedMut<'a, T> {
    /// Borrows `slice` for the job.
    pub fn new(slice: &'a mut [T]) -> Self {
        SharedMut {
            ptr: slice.as_mut_ptr(),
            len: slice.len(),
            _borrow: std::marker::PhantomData,
        }
    }

    /// The elements `range` (panics if out of bounds).
    ///
    /// # Safety
    /// No two live parts may overlap: each unit of a job takes its own range.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn part(&self, range: std::ops::Range<usize>) -> &mut [T] {
        assert!(range.start <= range.end && range.end <= self.len);
        // SAFETY: in bounds (asserted); exclusive by the caller's contract; the borrow of the
        // whole slice lives for 'a.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(range.start), range.len()) }
    }
}

/// Runs `f` over `0..len` in chunks of `chunk` elements, the chunks shared out as units of one
/// job (or run in order here when there is only one).
pub fn chunks(len: usize, chunk: usize, f: &(dyn Fn(std::ops::Range<usize>) + Sync)) {
    let chunk = chunk.max(1);
    run(len.div_ceil(chunk), &|u| {
        f(u * chunk..len.min((u + 1) * chunk))
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_unit_of_every_job_runs_once() {
        let hits: Vec<AtomicUsize> = (0..1000).map(|_| AtomicUsize::new(0)).collect();
        for _ in 0..200 {
            run(hits.len() / 10, &|u| {
                for h in &hits[u * 10..u * 10 + 10] {
                    h.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == 200));
    }
}
