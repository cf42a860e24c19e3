//! Where packets go: synthesised headers and their checksum, the ports that pick Wireshark's
//! dissectors, the pcapng writer and its section text, the text view, and `-r`.

pub mod checksum;
#[cfg(test)]
mod golden;
pub mod headers;
pub mod pcapng;
pub mod ports;
pub mod reader;
pub mod section;
pub mod sink;
pub mod text;
