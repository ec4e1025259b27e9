//! Writing a delivery from the fan-out itself, when the subscriber's session has nothing
//! queued and is not writing: the publisher sends the MESSAGE to the session's WebSocket
//! as one `writev` of three pieces (the frame header, the subscription's prefix, the
//! shared message bytes), with no wake-up of the session, no poll of its task and no copy.
//! Each delivery otherwise costs a wake-up, a poll, a drain under the outbox's lock and an
//! assembly before the one `sendto` every server makes (docs/cpu-per-delivery.md).
//!
//! Only while the publisher keeps up: a publisher that is behind its own input (more of it
//! already read, or waiting on its socket) does not write directly, so every copy goes
//! through the outbox as before: the sessions, woken on every worker, write in parallel
//! and, once they are behind, several messages per write. A publisher says it keeps up
//! with [`Permit`], for the fan-outs it runs on its own thread while the permit lives, up
//! to [`BUDGET`] copies; without one (history; replays) every copy is queued. The Kafka
//! consumer, on a thread of its own, holds one only while the runtime has spare workers
//! (`Ingest::record_from_own_thread`): loaded, its one thread would write every copy in
//! turn where the sessions write them on every worker at once.
//!
//! Nor does it write every copy of a fan-out while a worker of the runtime is idle: it
//! writes its [`share`], and the hub queues the others first, so that the sessions writing
//! them are woken on the idle workers while the publisher writes its own. One thread
//! writing 100 copies in turn left the other worker idle at light load: the 50th copy
//! trailed the first by 1.7 ms at p50, against 0.35 ms with every copy queued and 0.25 ms
//! for the bare broadcaster (docs/cpu-per-delivery.md). With no worker idle, the publisher
//! writes every copy it may: queuing them would add wake-ups and no parallel write. Nor
//! does it share once the workers are busy (10% of their time, `runtime::spare_workers`):
//! the wake-ups cost 3-5% more CPU per delivery, which a loaded replica needs more than
//! the fraction of a millisecond they save.
//!
//! The outbox decides the rest under its lock (see `Outbox::push_message`): a socket
//! attached, nothing queued, the session not writing, an auto-ack subscription. What the
//! socket does not take at once is queued as raw bytes the session writes before anything
//! else; when it takes nothing, the message is queued as usual.

use bytes::Bytes;
use std::cell::Cell;
use std::os::fd::RawFd;

/// Most copies one permit writes directly. The writes are serial on the publisher's thread
/// (~10 µs each here: ~1.3 ms in all); the copies of a larger fan-out past them are queued,
/// so the sessions write them on every worker at once, and one publication to thousands
/// of subscribers does not hold its publisher for tens of milliseconds.
pub const BUDGET: u32 = 128;

thread_local! {
    /// Direct writes left to the permit in force on this thread (0: none).
    static LEFT: Cell<u32> = const { Cell::new(0) };
}

/// Lets the fan-outs run on this thread write up to [`BUDGET`] copies directly while it
/// lives.
pub struct Permit {
    before: u32,
}

impl Permit {
    /// `keeps_up`: the publisher has nothing more waiting to be handled.
    pub fn new(keeps_up: bool) -> Permit {
        let left = if keeps_up { BUDGET } else { 0 };
        Permit {
            before: LEFT.with(|l| l.replace(left)),
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        LEFT.with(|l| l.set(self.before));
    }
}

/// How many of a fan-out's `copies` the publisher writes itself, the hub queuing the rest
/// first: [`share_among`] the publisher and the runtime's spare workers (idle, while the
/// runtime is light). Without a permit, all of them: none is written directly, so none
/// need be queued first.
pub fn share(copies: usize) -> usize {
    if permitted() {
        share_among(copies, crate::runtime::spare_workers())
    } else {
        copies
    }
}

/// The publisher's part of `copies` when `idle` workers can write the others at the same
/// time: an equal part, rounded up.
pub fn share_among(copies: usize, idle: usize) -> usize {
    copies.div_ceil(idle + 1)
}

/// Whether a fan-out on this thread may write a copy directly now.
pub fn permitted() -> bool {
    LEFT.with(Cell::get) > 0
}

/// One direct write made under the permit in force.
pub fn spent() {
    LEFT.with(|l| l.set(l.get().saturating_sub(1)));
}

/// How much of a direct write the socket took.
#[derive(Debug, PartialEq, Eq)]
pub enum Written {
    /// All of it: the bytes written, frame header included.
    All(usize),
    /// Part of it: the bytes written, and the rest, to be written before anything else.
    Part { written: usize, rest: Bytes },
    /// Nothing (the socket is full, or failed: the session finds out on its own write).
    Nothing,
}

/// The header of an unmasked, final WebSocket data frame of `len` bytes; how many bytes of
/// `h` it takes.
pub fn frame_header(len: usize, utf8: bool, h: &mut [u8; 10]) -> usize {
    h[0] = if utf8 { 0x81 } else { 0x82 };
    if len < 126 {
        h[1] = len as u8;
        2
    } else if len <= u16::MAX as usize {
        h[1] = 126;
        h[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        4
    } else {
        h[1] = 127;
        h[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        10
    }
}

/// Writes `prefix` then `body` to `fd` as one WebSocket message, without waiting.
pub fn write_message(fd: RawFd, prefix: &[u8], body: &[u8], utf8: bool) -> Written {
    let mut h = [0u8; 10];
    let hl = frame_header(prefix.len() + body.len(), utf8, &mut h);
    let total = hl + prefix.len() + body.len();
    let iov = [
        libc::iovec {
            iov_base: h.as_ptr() as *mut libc::c_void,
            iov_len: hl,
        },
        libc::iovec {
            iov_base: prefix.as_ptr() as *mut libc::c_void,
            iov_len: prefix.len(),
        },
        libc::iovec {
            iov_base: body.as_ptr() as *mut libc::c_void,
            iov_len: body.len(),
        },
    ];
    let n = loop {
        // SAFETY: the three pieces are live slices for the length given; `fd` is the
        // session's socket, attached to the outbox until the session detaches it under the
        // lock the caller holds (before the socket closes).
        let n = unsafe { libc::writev(fd, iov.as_ptr(), iov.len() as libc::c_int) };
        if n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
            continue;
        }
        break n;
    };
    if n <= 0 {
        return Written::Nothing;
    }
    let n = n as usize;
    if n == total {
        return Written::All(total);
    }
    let mut all = Vec::with_capacity(total);
    all.extend_from_slice(&h[..hl]);
    all.extend_from_slice(prefix);
    all.extend_from_slice(body);
    Written::Part {
        written: n,
        rest: Bytes::from(all).slice(n..),
    }
}

/// Whether bytes from the peer are waiting on `fd`'s socket, not yet read.
pub fn unread(fd: RawFd) -> bool {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one c_int; `fd` is a socket the caller owns.
    let r = unsafe { libc::ioctl(fd, libc::FIONREAD, &mut n) };
    r == 0 && n > 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;

    #[test]
    fn headers_take_two_four_or_ten_bytes() {
        let mut h = [0u8; 10];
        assert_eq!(frame_header(125, true, &mut h), 2);
        assert_eq!(&h[..2], &[0x81, 125]);
        assert_eq!(frame_header(126, false, &mut h), 4);
        assert_eq!(&h[..4], &[0x82, 126, 0, 126]);
        assert_eq!(frame_header(70_000, true, &mut h), 10);
        assert_eq!(h[1], 127);
        assert_eq!(u64::from_be_bytes(h[2..10].try_into().unwrap()), 70_000);
    }

    #[test]
    fn a_message_arrives_whole_as_one_websocket_frame() {
        let (a, mut b) = UnixStream::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        let w = write_message(
            a.as_raw_fd(),
            b"MESSAGE\nsubscription:0\n",
            b"x:1\n\nhi\0",
            true,
        );
        assert_eq!(w, Written::All(2 + 23 + 8));
        let mut got = [0u8; 33];
        b.read_exact(&mut got).unwrap();
        assert_eq!(&got[..2], &[0x81, 31]);
        assert_eq!(&got[2..], b"MESSAGE\nsubscription:0\nx:1\n\nhi\0");
    }

    #[test]
    fn what_a_full_socket_does_not_take_is_handed_back() {
        let (a, mut b) = UnixStream::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        let body = vec![b'y'; 4 << 20];
        let Written::Part { written, rest } = write_message(a.as_raw_fd(), b"P\n", &body, true)
        else {
            panic!("4 MiB fitted a socket buffer");
        };
        assert!(!rest.is_empty() && rest.len() < body.len());
        // Nothing more is taken while the peer reads nothing.
        assert_eq!(
            write_message(a.as_raw_fd(), b"P\n", b"z", true),
            Written::Nothing
        );
        assert!(unread(b.as_raw_fd()));
        let taken = 10 + 2 + body.len() - rest.len();
        assert_eq!(written, taken);
        let mut got = vec![0u8; taken];
        b.read_exact(&mut got).unwrap();
        assert_eq!(&got[..2], &[0x81, 127]);
        assert_eq!(&got[10..12], b"P\n");
    }

    #[test]
    fn a_permit_lasts_while_it_lives_and_for_its_budget() {
        assert!(!permitted());
        {
            let _p = Permit::new(true);
            assert!(permitted());
            for _ in 0..BUDGET - 1 {
                spent();
            }
            assert!(permitted());
            spent();
            assert!(!permitted());
        }
        {
            let _p = Permit::new(true);
            assert!(permitted());
            {
                let _q = Permit::new(false);
                assert!(!permitted());
            }
            assert!(permitted());
        }
        assert!(!permitted());
    }

    #[test]
    fn the_publisher_writes_its_equal_part_and_none_without_a_permit() {
        assert_eq!(share_among(100, 0), 100);
        assert_eq!(share_among(100, 1), 50);
        assert_eq!(share_among(101, 1), 51);
        assert_eq!(share_among(100, 3), 25);
        assert_eq!(share_among(1, 1), 1);
        assert_eq!(share_among(0, 1), 0);
        assert_eq!(
            share(7),
            7,
            "no permit: nothing is written, nothing held back"
        );
        let _p = Permit::new(true);
        {
            let _w = Permit::new(false);
            assert!(!permitted());
            assert_eq!(share(7), 7);
        }
        assert!(permitted(), "the permit resumes after");
    }
}
