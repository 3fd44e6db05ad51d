//! File descriptors: the soft limit is raised to the hard one at start (systemd's default soft
//! limit is 1024), and the guest plane's connection cap leaves a reserve below it, so the
//! control listener, the store and key files always find a descriptor.

use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

/// Descriptors kept back from guest connections: the control API's connections, the store,
/// key and token files, hook processes, the definitions watcher, logs.
const RESERVED: u64 = 256;
/// The guest plane never gets fewer connections than this, whatever the limit.
const MIN_GUEST_CONNECTIONS: u64 = 16;
/// Nor more: beyond this a host has other problems than one noisy VM.
const MAX_GUEST_CONNECTIONS: u64 = 1 << 20;

/// Raises the soft `RLIMIT_NOFILE` to the hard limit; returns the soft limit now in effect.
pub(super) fn raise() -> u64 {
    let before = getrlimit(Resource::Nofile);
    let soft = before.current.unwrap_or(u64::MAX);
    let hard = before.maximum;
    if hard.is_some_and(|hard| hard <= soft) || (hard.is_none() && before.current.is_none()) {
        tracing::info!(soft, hard = ?hard, "file-descriptor limit");
        return soft;
    }
    let raised = Rlimit {
        current: hard,
        maximum: hard,
    };
    match setrlimit(Resource::Nofile, raised) {
        Ok(()) => {
            let now = hard.unwrap_or(u64::MAX);
            tracing::info!(from = soft, to = now, hard = ?hard, "raised the file-descriptor limit");
            now
        }
        Err(error) => {
            tracing::warn!(soft, hard = ?hard, %error, "cannot raise the file-descriptor limit");
            soft
        }
    }
}

/// The default cap on guest connections for a soft descriptor limit.
pub(super) fn guest_connections(soft_limit: u64) -> usize {
    let room = soft_limit.saturating_sub(RESERVED + soft_limit / 16);
    room.clamp(MIN_GUEST_CONNECTIONS, MAX_GUEST_CONNECTIONS) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_guest_cap_leaves_a_reserve() {
        assert_eq!(guest_connections(1024), 1024 - 256 - 64);
        assert_eq!(guest_connections(100), MIN_GUEST_CONNECTIONS as usize);
        assert_eq!(guest_connections(u64::MAX), MAX_GUEST_CONNECTIONS as usize);
        assert!(guest_connections(524_288) < 524_288 - 256);
    }
}
