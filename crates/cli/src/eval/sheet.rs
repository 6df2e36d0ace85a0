//! The contact sheet of `easel eval`: every generated image, upscaled by
//! nearest neighbour, with its prompt written underneath in a 3×5 bitmap
//! font and a bar that says whether the scorer retrieved it (green: the
//! correct name in the top 5; red: not).

use easel_core::RgbImage;

/// Layout of the sheet.
pub struct SheetLayout {
    /// Tiles per row.
    pub columns: usize,
    /// Nearest-neighbour upscale of each image.
    pub image_scale: usize,
    /// Pixel size of one font dot.
    pub font_scale: usize,
    /// Text lines under each image (longer prompts are cut with "..").
    pub lines: usize,
}

impl Default for SheetLayout {
    fn default() -> Self {
        Self {
            columns: 12,
            image_scale: 3,
            font_scale: 2,
            lines: 3,
        }
    }
}

/// One tile: the image, its caption and whether it was retrieved.
pub struct Tile<'a> {
    /// The generated image.
    pub image: &'a RgbImage,
    /// The prompt.
    pub caption: &'a str,
    /// Whether a correct name ranked in the top 5.
    pub hit: bool,
}

const PAD: usize = 6;
const BAR: usize = 3;

/// Draws the sheet: white background, tiles left to right, top to bottom.
pub fn contact_sheet(tiles: &[Tile], layout: &SheetLayout) -> RgbImage {
    let img_side = tiles
        .iter()
        .map(|t| t.image.width.max(t.image.height) as usize)
        .max()
        .unwrap_or(32)
        * layout.image_scale;
    let advance = 4 * layout.font_scale;
    let line_h = 7 * layout.font_scale;
    let tile_w = img_side.max(advance * 8);
    let tile_h = img_side + BAR + 2 + layout.lines * line_h;
    let cols = layout.columns.max(1).min(tiles.len().max(1));
    let rows = tiles.len().div_ceil(cols);
    let (w, h) = (
        PAD + cols * (tile_w + PAD),
        PAD + rows.max(1) * (tile_h + PAD),
    );
    let mut canvas = Canvas {
        w,
        px: vec![255; w * h * 3],
    };
    for (i, t) in tiles.iter().enumerate() {
        let (x0, y0) = (
            PAD + (i % cols) * (tile_w + PAD),
            PAD + (i / cols) * (tile_h + PAD),
        );
        let s = layout.image_scale;
        for y in 0..t.image.height as usize * s {
            for x in 0..t.image.width as usize * s {
                let p = ((y / s) * t.image.width as usize + x / s) * 3;
                canvas.set(
                    x0 + x,
                    y0 + y,
                    [
                        t.image.pixels[p],
                        t.image.pixels[p + 1],
                        t.image.pixels[p + 2],
                    ],
                );
            }
        }
        let colour = if t.hit { [40, 170, 70] } else { [210, 50, 50] };
        for y in 0..BAR {
            for x in 0..img_side {
                canvas.set(x0 + x, y0 + img_side + y, colour);
            }
        }
        let per_line = tile_w / advance;
        for (l, line) in wrap(t.caption, per_line, layout.lines).iter().enumerate() {
            let ty = y0 + img_side + BAR + 2 + l * line_h;
            for (c, ch) in line.chars().enumerate() {
                canvas.glyph(x0 + c * advance, ty, ch, layout.font_scale);
            }
        }
    }
    RgbImage {
        width: w as u32,
        height: h as u32,
        pixels: canvas.px,
    }
}

/// Greedy word wrap to `width` characters and at most `lines` lines; a word
/// longer than a line is split, and text that does not fit ends in "..".
fn wrap(text: &str, width: usize, lines: usize) -> Vec<String> {
    let width = width.max(3);
    let mut out: Vec<String> = Vec::new();
    let mut cur = String::new();
    for word in text.split_whitespace() {
        let mut word = word.to_string();
        loop {
            let need = if cur.is_empty() { 0 } else { 1 } + word.chars().count();
            if cur.chars().count() + need <= width {
                if !cur.is_empty() {
                    cur.push(' ');
                }
                cur.push_str(&word);
                break;
            }
            if cur.is_empty() {
                let head: String = word.chars().take(width).collect();
                word = word.chars().skip(width).collect();
                out.push(head);
            } else {
                out.push(std::mem::take(&mut cur));
            }
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    if out.len() > lines {
        out.truncate(lines);
        let last = &mut out[lines - 1];
        let keep: String = last.chars().take(width - 2).collect();
        *last = keep + "..";
    }
    out
}

struct Canvas {
    w: usize,
    px: Vec<u8>,
}

impl Canvas {
    fn set(&mut self, x: usize, y: usize, rgb: [u8; 3]) {
        let p = (y * self.w + x) * 3;
        if p + 3 <= self.px.len() && x < self.w {
            self.px[p..p + 3].copy_from_slice(&rgb);
        }
    }

    fn glyph(&mut self, x: usize, y: usize, ch: char, scale: usize) {
        for (row, bits) in font(ch).iter().enumerate() {
            for col in 0..3 {
                if bits & (4 >> col) != 0 {
                    for dy in 0..scale {
                        for dx in 0..scale {
                            self.set(x + col * scale + dx, y + row * scale + dy, [0, 0, 0]);
                        }
                    }
                }
            }
        }
    }
}

/// A 3×5 glyph: five rows of three bits, the leftmost column the highest
/// bit. Letters are drawn as capitals; unknown characters as "?".
fn font(ch: char) -> [u8; 5] {
    match ch.to_ascii_uppercase() {
        'A' => [2, 5, 7, 5, 5],
        'B' => [6, 5, 6, 5, 6],
        'C' => [3, 4, 4, 4, 3],
        'D' => [6, 5, 5, 5, 6],
        'E' => [7, 4, 6, 4, 7],
        'F' => [7, 4, 6, 4, 4],
        'G' => [3, 4, 5, 5, 3],
        'H' => [5, 5, 7, 5, 5],
        'I' => [7, 2, 2, 2, 7],
        'J' => [1, 1, 1, 5, 2],
        'K' => [5, 5, 6, 5, 5],
        'L' => [4, 4, 4, 4, 7],
        'M' => [5, 7, 7, 5, 5],
        'N' => [6, 5, 5, 5, 5],
        'O' => [2, 5, 5, 5, 2],
        'P' => [6, 5, 6, 4, 4],
        'Q' => [2, 5, 5, 6, 3],
        'R' => [6, 5, 6, 5, 5],
        'S' => [3, 4, 2, 1, 6],
        'T' => [7, 2, 2, 2, 2],
        'U' => [5, 5, 5, 5, 7],
        'V' => [5, 5, 5, 5, 2],
        'W' => [5, 5, 7, 7, 5],
        'X' => [5, 5, 2, 5, 5],
        'Y' => [5, 5, 2, 2, 2],
        'Z' => [7, 1, 2, 4, 7],
        '0' => [7, 5, 5, 5, 7],
        '1' => [2, 6, 2, 2, 7],
        '2' => [6, 1, 2, 4, 7],
        '3' => [6, 1, 2, 1, 6],
        '4' => [5, 5, 7, 1, 1],
        '5' => [7, 4, 6, 1, 6],
        '6' => [3, 4, 7, 5, 7],
        '7' => [7, 1, 1, 2, 2],
        '8' => [7, 5, 7, 5, 7],
        '9' => [7, 5, 7, 1, 6],
        ' ' => [0; 5],
        ',' => [0, 0, 0, 2, 4],
        '.' => [0, 0, 0, 0, 2],
        '-' => [0, 0, 7, 0, 0],
        '&' => [2, 5, 2, 5, 3],
        '\'' | '’' => [2, 2, 0, 0, 0],
        '=' => [0, 7, 0, 7, 0],
        '|' => [2, 2, 2, 2, 2],
        _ => [6, 1, 2, 0, 2],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapping_keeps_words_whole_and_marks_cut_text() {
        assert_eq!(wrap("red apple", 12, 3), vec!["red apple"]);
        assert_eq!(
            wrap("smiling face with heart shaped eyes", 12, 3),
            vec!["smiling face", "with heart", "shaped eyes"]
        );
        assert_eq!(wrap("a b c d e f g h", 3, 2), vec!["a b", "c.."]);
    }

    #[test]
    fn a_sheet_has_one_tile_per_image_and_draws_text() {
        let img = RgbImage {
            width: 32,
            height: 32,
            pixels: vec![128; 32 * 32 * 3],
        };
        let tiles: Vec<Tile> = (0..5)
            .map(|i| Tile {
                image: &img,
                caption: "taco",
                hit: i % 2 == 0,
            })
            .collect();
        let layout = SheetLayout {
            columns: 3,
            ..Default::default()
        };
        let sheet = contact_sheet(&tiles, &layout);
        assert_eq!(sheet.width as usize, 6 + 3 * (96 + 6));
        assert_eq!(
            sheet.pixels.len(),
            (sheet.width * sheet.height * 3) as usize
        );
        assert!(
            sheet.pixels.chunks(3).any(|p| p == [0, 0, 0]),
            "no text drawn"
        );
    }
}
