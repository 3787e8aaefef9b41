//! Segment files: the header, reading frames back, and creating new segments.

pub mod header;
pub mod reader;
pub mod writer;

pub use header::{
    FORMAT_VERSION, LSN_SANE_MAX, SEGMENT_HEADER_LEN, SegmentHeader, parse_segment_name,
    segment_path,
};
pub use reader::{
    CoveredScan, Marks, ScanEnd, ScanSpec, TailPolicy, Torn, Vouched, scan_segment,
    scan_segment_covered, vouch,
};
