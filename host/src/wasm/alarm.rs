//! A plugin call's wall-time limit, without a thread.
//!
//! The engine runs with epoch interruption: compiled code checks the engine's epoch at
//! function entries and loop back-edges. Something has to advance the epoch while a plugin
//! runs. A ticker thread did, but in a process that lives for one CNI call the thread costs
//! more than the call: its creation, and at exit a second thread to stop (and, while it lives,
//! a TLB shootdown to the other CPU on every `munmap`/`mprotect` of the load). Measured on the
//! delegate path: 0.16 ms per ADD (docs/BENCHMARKS.md).
//!
//! Instead, each call arms a POSIX timer (`timer_create`, `CLOCK_MONOTONIC`) that signals the
//! calling thread only (`SIGEV_THREAD_ID`) at the deadline and then every [`TICK`]; the
//! handler advances the epoch, which wasmtime documents as async-signal-safe (an atomic
//! increment). The timer is deleted when the call's store is dropped.
//!
//! The epoch is the engine's, so another thread's alarm (tests run calls in parallel) also
//! reaches this call's store. The store therefore asks for one tick and its deadline callback
//! compares the clock with the call's own deadline: early ticks only continue the call.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicPtr, AtomicU64, Ordering};
use std::time::Duration;

use wasmtime::Engine;

/// How often a timer signals after its deadline, should a tick be spent before it (the
/// deadline callback always checks the clock itself).
pub const TICK: Duration = Duration::from_millis(10);

/// Which real-time signal carries the alarm: `SIGRTMIN + 7`, clear of glibc's own (below
/// `SIGRTMIN`) and of the first few that applications tend to pick.
const SIGNAL_OFFSET: libc::c_int = 7;

/// The engine every alarm advances: the process-wide one (set once by [`install`]).
static ENGINE: AtomicPtr<Engine> = AtomicPtr::new(std::ptr::null_mut());
/// Alarms handled so far in this process (every thread's).
static FIRED: AtomicU64 = AtomicU64::new(0);

fn signal() -> libc::c_int {
    libc::SIGRTMIN() + SIGNAL_OFFSET
}

extern "C" fn on_alarm(_: libc::c_int) {
    FIRED.fetch_add(1, Ordering::Relaxed);
    let engine = ENGINE.load(Ordering::Acquire);
    if !engine.is_null() {
        // SAFETY: set once from a `&'static Engine` before the handler was installed.
        unsafe { &*engine }.increment_epoch();
    }
}

/// Installs (once per process) the handler that advances `engine`'s epoch. A signal that is
/// already handled by someone else is not taken over: without our handler an alarm could end
/// the process, so the call must not run.
pub fn install(engine: &'static Engine) -> Result<(), String> {
    static INSTALLED: OnceLock<Result<(), String>> = OnceLock::new();
    let installed = INSTALLED.get_or_init(|| {
        let sig = signal();
        // SAFETY: sigaction with a zeroed struct to query, then our handler, which only does
        // an atomic load and an atomic increment.
        unsafe {
            let mut old: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(sig, std::ptr::null(), &mut old) != 0 {
                return Err(format!(
                    "cannot query signal {sig}: {}",
                    std::io::Error::last_os_error()
                ));
            }
            if old.sa_sigaction != libc::SIG_DFL {
                return Err(format!(
                    "signal {sig} (SIGRTMIN+{SIGNAL_OFFSET}) already has a handler; the Wasm time limit cannot use it"
                ));
            }
            ENGINE.store(std::ptr::from_ref(engine).cast_mut(), Ordering::Release);
            let mut act: libc::sigaction = std::mem::zeroed();
            act.sa_sigaction = on_alarm as *const () as libc::sighandler_t;
            // SA_RESTART: a syscall the alarm interrupts (a plugin's log write) resumes.
            // SA_ONSTACK: wasmtime sets up an alternate stack; a guest deep in recursion
            // leaves the handler no room on its own.
            act.sa_flags = libc::SA_RESTART | libc::SA_ONSTACK;
            libc::sigemptyset(&mut act.sa_mask);
            if libc::sigaction(sig, &act, std::ptr::null_mut()) != 0 {
                return Err(format!(
                    "cannot install the handler of signal {sig}: {}",
                    std::io::Error::last_os_error()
                ));
            }
        }
        Ok(())
    });
    installed.clone()?;
    // Installed, so `ENGINE` holds the engine it was installed for.
    if ENGINE.load(Ordering::Acquire).cast_const() != std::ptr::from_ref(engine) {
        return Err("the Wasm time limit serves the process-wide engine only".into());
    }
    Ok(())
}

/// How many alarm signals this process has handled (all threads).
pub fn fired() -> u64 {
    FIRED.load(Ordering::Relaxed)
}

/// An armed timer; deleted on drop.
#[derive(Debug)]
pub struct Alarm(libc::timer_t);

// SAFETY: a timer id is a plain handle; deleting it from another thread is allowed.
unsafe impl Send for Alarm {}
// SAFETY: nothing is reachable through `&Alarm`.
unsafe impl Sync for Alarm {}

impl Alarm {
    /// Arms a timer that signals this thread `after` from now and every [`TICK`] after that.
    /// [`install`] must have succeeded.
    pub fn arm(after: Duration) -> Result<Alarm, String> {
        // SAFETY: plain syscalls on zero-initialised structs we own; the timer id is ours to
        // delete (on failure here, or in `Drop`).
        unsafe {
            let mut sev: libc::sigevent = std::mem::zeroed();
            sev.sigev_notify = libc::SIGEV_THREAD_ID;
            sev.sigev_signo = signal();
            sev.sigev_notify_thread_id = libc::gettid();
            let mut id: libc::timer_t = std::mem::zeroed();
            if libc::timer_create(libc::CLOCK_MONOTONIC, &mut sev, &mut id) != 0 {
                return Err(format!(
                    "cannot create the Wasm call timer: {}",
                    std::io::Error::last_os_error()
                ));
            }
            let alarm = Alarm(id);
            // A zero value would disarm the timer: a zero budget fires after 1 ns instead.
            let first = after.max(Duration::from_nanos(1));
            let spec = libc::itimerspec {
                it_value: timespec(first),
                it_interval: timespec(TICK),
            };
            if libc::timer_settime(id, 0, &spec, std::ptr::null_mut()) != 0 {
                return Err(format!(
                    "cannot arm the Wasm call timer: {}",
                    std::io::Error::last_os_error()
                ));
            }
            Ok(alarm)
        }
    }
}

impl Drop for Alarm {
    fn drop(&mut self) {
        // SAFETY: our own timer id, deleted once.
        unsafe { libc::timer_delete(self.0) };
    }
}

fn timespec(d: Duration) -> libc::timespec {
    libc::timespec {
        // `time_t` is 64-bit on every target we build (glibc and musl); saturate rather than
        // wrap for a budget beyond it.
        tv_sec: d.as_secs().try_into().unwrap_or(i64::MAX),
        tv_nsec: d.subsec_nanos().into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn install_is_once_per_engine_and_an_alarm_fires_on_time() {
        let engine = crate::wasm::engine::engine().unwrap();
        install(engine).unwrap();
        // Idempotent, and refuses another engine.
        install(engine).unwrap();
        let other: &'static Engine = Box::leak(Box::new(Engine::default()));
        assert!(install(other).is_err());

        let (started, before) = (Instant::now(), fired());
        let alarm = Alarm::arm(Duration::from_millis(30)).unwrap();
        // The signal arrives mid-sleep: handled (the default action would end the test
        // process), the sleep resumed for what is left.
        let mut left = Duration::from_millis(80);
        while !left.is_zero() {
            let t = Instant::now();
            std::thread::sleep(left);
            left = left.saturating_sub(t.elapsed());
        }
        drop(alarm);
        assert!(started.elapsed() >= Duration::from_millis(80));
        // At 30 ms, then every 10 ms: at least the first and a tick within 80 ms.
        assert!(fired() - before >= 2, "{} alarms", fired() - before);
    }
}
