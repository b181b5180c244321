//! `docs/benchmarks.md`: the generated report goes between two markers; the rest of the file is kept.

pub const BEGIN: &str = "<!-- bench:begin -->";
pub const END: &str = "<!-- bench:end -->";

const FILE_HEAD: &str = include_str!("prose/file-head.md");
const FILE_HISTORY: &str = include_str!("prose/file-history.md");

/// The file with `generated` between the markers: the rest of an existing file (head, history) is kept; a file
/// without markers is kept whole and the block appended; a missing file gets a head and a History section.
pub fn splice(existing: Option<&str>, generated: &str) -> String {
    let block = format!("{BEGIN}\n{}\n{END}", generated.trim_end());
    match existing {
        Some(text) => match (text.find(BEGIN), text.find(END)) {
            (Some(b), Some(e)) if b < e => format!("{}{block}{}", &text[..b], &text[e + END.len()..]),
            // A file written by hand: keep all of it and add the block at the end.
            _ => format!("{}\n\n{block}\n", text.trim_end()),
        },
        None => format!("{FILE_HEAD}\n{block}\n\n{FILE_HISTORY}"),
    }
}
