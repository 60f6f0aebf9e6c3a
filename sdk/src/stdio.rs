//! The worker's protocol pipes: the process's stdin and stdout are taken for frames, and
//! fds 0 and 1 are pointed elsewhere so nothing else in the process can touch the frames.

use std::io::{self, BufReader, BufWriter};

/// Where frames are read from in a real worker.
#[cfg(unix)]
pub(crate) type ProtocolReader = BufReader<std::fs::File>;
/// Where frames are written in a real worker.
#[cfg(unix)]
pub(crate) type ProtocolWriter = BufWriter<std::fs::File>;
/// Where frames are read from in a real worker.
#[cfg(not(unix))]
pub(crate) type ProtocolReader = BufReader<io::Stdin>;
/// Where frames are written in a real worker.
#[cfg(not(unix))]
pub(crate) type ProtocolWriter = BufWriter<io::Stdout>;

#[cfg(unix)]
mod sys {
    use std::os::raw::c_int;

    extern "C" {
        pub(super) fn dup2(oldfd: c_int, newfd: c_int) -> c_int;
    }
}

/// Takes the process's stdin and stdout for the protocol.
///
/// The protocol keeps close-on-exec duplicates of the original fds 0 and 1, so programs the
/// handler starts (`Command::spawn`, `.status()`) inherit neither pipe. Afterwards fd 0 is
/// `/dev/null` (reading stdin gives end of input at once) and fd 1 is stderr (`println!`
/// goes to the endpoint's log), for the handler and for its children.
#[cfg(unix)]
pub(crate) fn protocol_pipes() -> io::Result<(ProtocolReader, ProtocolWriter)> {
    use std::io::Write;
    use std::os::fd::AsFd;
    use std::os::fd::AsRawFd;

    io::stdout().flush()?;
    // `try_clone_to_owned` duplicates with F_DUPFD_CLOEXEC.
    let input = io::stdin().as_fd().try_clone_to_owned()?;
    let output = io::stdout().as_fd().try_clone_to_owned()?;
    let null = std::fs::File::open("/dev/null")?;
    // SAFETY: dup2 on descriptors this process owns: `null` is open until the end of this
    // function, fds 0-2 are the process's standard streams, and `input`/`output` keep the
    // original pipes alive. dup2 replaces fd 0 and fd 1 atomically and leaves the new
    // descriptors inheritable, as standard streams must be.
    let replaced = unsafe { sys::dup2(null.as_raw_fd(), 0) >= 0 && sys::dup2(2, 1) >= 0 };
    if !replaced {
        return Err(io::Error::last_os_error());
    }
    Ok((BufReader::new(std::fs::File::from(input)), BufWriter::new(std::fs::File::from(output))))
}

/// Without unix descriptors the streams are used as they are: handler output must not go to
/// stdout, and programs it starts must not inherit stdin.
#[cfg(not(unix))]
pub(crate) fn protocol_pipes() -> io::Result<(ProtocolReader, ProtocolWriter)> {
    Ok((BufReader::new(io::stdin()), BufWriter::new(io::stdout())))
}
