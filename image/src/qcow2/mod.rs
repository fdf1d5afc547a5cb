//! qcow2 images: a pure header/table codec and a streaming converter to raw.

pub mod header;
pub mod stream;

pub use header::{Header, Qcow2Error, MAGIC};
pub use stream::{convert, ConvertError, Converted, RangeRead};
