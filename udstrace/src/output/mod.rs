//! Where packets go: synthesised headers and their checksum, the ports that pick Wireshark's
//! dissectors, the names of the addresses, the pcapng writer and its section text, the text
//! view, the output file opened safely and the thread that writes it, rotated sets of files,
//! and `-r`.

pub(crate) mod checksum;
pub(crate) mod dbus;
pub(crate) mod dbus_sink;
pub(crate) mod file;
#[cfg(test)]
mod golden;
pub(crate) mod headers;
pub(crate) mod names;
pub(crate) mod pcapng;
pub(crate) mod ports;
pub(crate) mod reader;
pub(crate) mod rotate;
pub(crate) mod section;
pub(crate) mod sink;
pub(crate) mod summary;
pub(crate) mod text;
pub(crate) mod writer;
