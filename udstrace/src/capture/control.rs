//! A message's control data (an `AncillaryRecord`) as packet fields: `fds=` for
//! `SCM_RIGHTS`, `cred_*=` for `SCM_CREDENTIALS`, `cmsg=` for anything else, `control=cut:N`
//! when it was longer than what the kernel program kept (docs/FORMAT.md).

use std::{borrow::Cow, fmt::Write as _};

use crate::{
    packet::{escape_with, Meta, Raw},
    tracer::record::{control_messages, Ancillary, ControlMessage, PassedFd},
};

/// Sets `meta`'s control data fields from `a`; `what` names a descriptor the kernel program
/// resolved (a `?` stands for one it did not).
pub(super) fn apply(meta: &mut Meta<'_>, a: &Ancillary, what: &mut dyn FnMut(&PassedFd) -> String) {
    let mut fds = String::new();
    let mut others = String::new();
    let mut resolved = a.fds.iter();
    for m in control_messages(&a.control) {
        match m {
            ControlMessage::Rights(list) => {
                for fd in list {
                    // The kernel resolved the first SCM_RIGHTS message's descriptors, in order.
                    let desc = match resolved.next() {
                        Some(p) if p.fd == fd && p.mode != 0 => what(p),
                        _ => "?".to_string(),
                    };
                    if !fds.is_empty() {
                        fds.push(',');
                    }
                    let _ = write!(fds, "{fd}:");
                    // The list separator cannot stand inside a description.
                    escape_with(&mut fds, desc.as_bytes(), false, b"\\=, ");
                }
                resolved = [].iter();
            }
            ControlMessage::Credentials { pid, uid, gid } => {
                meta.cred_pid = Some(pid);
                meta.cred_uid = Some(uid);
                meta.cred_gid = Some(gid);
            }
            ControlMessage::Other { level, kind, len } => {
                if !others.is_empty() {
                    others.push(',');
                }
                let _ = write!(others, "{level}:{kind}:{len}");
            }
        }
    }
    meta.fds = Raw(Cow::Owned(fds));
    meta.cmsg = Raw(Cow::Owned(others));
    if a.control_len as usize > a.control.len() {
        meta.control = Raw(Cow::Owned(format!("cut:{}", a.control.len())));
    }
}
