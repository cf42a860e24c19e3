//! Where packets go: synthesised headers and their checksum, the ports that pick Wireshark's
//! dissectors, the pcapng writer and its section text, the text view, and `-r`.

pub(crate) mod checksum;
#[cfg(test)]
mod golden;
pub(crate) mod headers;
pub(crate) mod pcapng;
pub(crate) mod ports;
pub(crate) mod reader;
pub(crate) mod section;
pub(crate) mod sink;
pub(crate) mod text;
