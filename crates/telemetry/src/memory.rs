//! Memory a burst of load freed goes back to the operating system.
//!
//! glibc's allocator keeps what a process frees in its arenas for reuse, so a
//! service that once rendered a 10,000-workflow scrape or queued a thousand
//! requests keeps that peak resident long after: RSS is what schedulers and
//! OOM killers see. Every [`CHECK_EVERY`], if the arenas hold more than
//! [`TRIM_ABOVE`] free, `malloc_trim` hands the free pages back.
//! Other allocators and platforms return memory on their own; there this does
//! nothing.

use std::time::Duration;

/// How often the arenas are looked at.
pub const CHECK_EVERY: Duration = Duration::from_secs(10);

/// Free memory in the arenas past which it is handed back.
pub const TRIM_ABOVE: usize = 4 << 20;

/// Checks the allocator every [`CHECK_EVERY`] until the runtime stops.
pub async fn give_back_freed_memory() {
    let mut every = tokio::time::interval(CHECK_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        // It takes the arenas' locks: off the async workers.
        let Ok(trimmed) = tokio::task::spawn_blocking(|| trim_if_above(TRIM_ABOVE)).await else {
            return;
        };
        if let Some(free) = trimmed {
            tracing::debug!(free_bytes = free, "gave freed memory back to the OS");
        }
    }
}

/// Hands the allocator's free pages back when its arenas hold more than
/// `threshold` bytes free; returns how many they held. Pages already given
/// back still count as free (the allocator keeps their addresses), so a
/// fragmented heap is trimmed on every check: each is then a walk of the
/// free lists and an `madvise` per free run of pages, cheap next to
/// [`CHECK_EVERY`]; telling which free pages are still resident would cost
/// as much.
pub fn trim_if_above(threshold: usize) -> Option<usize> {
    let free = free_in_arenas()?;
    if free <= threshold {
        return None;
    }
    trim();
    Some(free)
}

/// What the allocator holds, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AllocatorBytes {
    /// Handed out and not freed yet (in the arenas, and mapped on their own).
    pub in_use: usize,
    /// Freed and kept in the arenas for reuse; pages given back to the OS
    /// still count (their addresses stay the allocator's).
    pub free: usize,
}

/// What glibc's allocator holds now; `None` with another allocator.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
pub fn allocator_bytes() -> Option<AllocatorBytes> {
    // SAFETY: a thread-safe glibc call with no arguments, returning a plain
    // struct by value.
    let info = unsafe { libc::mallinfo2() };
    Some(AllocatorBytes {
        in_use: info.uordblks + info.hblkhd,
        free: info.fordblks,
    })
}

/// Other allocators keep their own accounts.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn allocator_bytes() -> Option<AllocatorBytes> {
    None
}

fn free_in_arenas() -> Option<usize> {
    allocator_bytes().map(|bytes| bytes.free)
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn trim() {
    // SAFETY: a thread-safe glibc call with an integer argument (0: keep no
    // padding at the top of the heap).
    unsafe { libc::malloc_trim(0) };
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() {}

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod tests {
    use super::*;

    /// Resident set size of this process, from /proc.
    fn resident_bytes() -> usize {
        let statm = std::fs::read_to_string("/proc/self/statm").expect("statm");
        let pages: usize = statm
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse().ok())
            .expect("resident pages");
        pages * 4096
    }

    #[test]
    fn freed_memory_leaves_the_resident_set() {
        // Many small blocks, as a scrape's strings are, touched, then freed:
        // glibc keeps them in the heap, where only a trim returns them.
        let blocks: Vec<Vec<u8>> = (0..64 * 1024)
            .map(|i| vec![(i % 251) as u8; 1024])
            .collect();
        let keep: Vec<Vec<u8>> = blocks.iter().step_by(4096).cloned().collect();
        let before = resident_bytes();
        drop(blocks);
        let held = trim_if_above(1 << 20).expect("the freed blocks are over the threshold");
        assert!(held >= 32 << 20, "held {held} bytes free");
        let after = resident_bytes();
        assert!(
            after + (32 << 20) < before,
            "resident {before} before, {after} after the trim"
        );
        assert_eq!(keep.len(), 16);
    }
}
