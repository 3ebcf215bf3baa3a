//! Codes and Chinese names of the demo city's administrative units.

/// Real GB/T 2260 county-level divisions of Shigatse (日喀则市, 5402), urban district first.
const SHIGATSE_DISTRICTS: [(&str, &str); 18] = [
    ("540202", "桑珠孜区"),
    ("540221", "南木林县"),
    ("540222", "江孜县"),
    ("540223", "定日县"),
    ("540224", "萨迦县"),
    ("540225", "拉孜县"),
    ("540226", "昂仁县"),
    ("540227", "谢通门县"),
    ("540228", "白朗县"),
    ("540229", "仁布县"),
    ("540230", "康马县"),
    ("540231", "定结县"),
    ("540232", "仲巴县"),
    ("540233", "亚东县"),
    ("540234", "吉隆县"),
    ("540235", "聂拉木县"),
    ("540236", "萨嘎县"),
    ("540237", "岗巴县"),
];

const DISTRICT_WORDS: [&str; 12] =
    ["年楚", "雅江", "珠峰", "扎西", "德吉", "格桑", "吉祥", "雪域", "圣城", "康桑", "白玛", "曲水"];

const STREET_WORDS: [&str; 24] = [
    "城南",
    "城北",
    "城东",
    "城西",
    "珠峰路",
    "上海路",
    "山东路",
    "吉林路",
    "黑龙江路",
    "扎西宗",
    "年楚河",
    "雅鲁藏布",
    "德勒",
    "甲措雄",
    "东嘎",
    "曲美",
    "聂日雄",
    "江当",
    "纳尔",
    "联乡",
    "边雄",
    "曲布雄",
    "帕热",
    "宗山",
];

const COMMUNITY_WORDS: [&str; 43] = [
    "扎西宗",
    "德勒",
    "雪强",
    "桑珠",
    "吉祥",
    "幸福",
    "团结",
    "和平",
    "吉林",
    "上海",
    "山东",
    "黑龙江",
    "宗山",
    "帕热",
    "格桑",
    "曲布",
    "拉鲁",
    "白玛",
    "达瓦",
    "次仁",
    "尼玛",
    "央金",
    "卓玛",
    "强巴",
    "平措",
    "旺堆",
    "索朗",
    "拉巴",
    "普布",
    "边巴",
    "加措",
    "贡觉",
    "林卡",
    "雪康",
    "江嘎",
    "冲堆",
    "年木",
    "热萨",
    "曲珍",
    "仁增",
    "顿珠",
    "德吉",
    "夏鲁",
];

/// Chinese numeral for 1..=999, as used in generated names ("二", "十一", "一百零五").
pub(super) fn numeral(n: usize) -> String {
    const D: [&str; 10] = ["零", "一", "二", "三", "四", "五", "六", "七", "八", "九"];
    assert!((1..1000).contains(&n));
    let (h, t, u) = (n / 100, n / 10 % 10, n % 10);
    let mut s = String::new();
    if h > 0 {
        s.push_str(D[h]);
        s.push('百');
        if t == 0 && u > 0 {
            s.push('零');
        }
    }
    if t > 0 {
        if !(t == 1 && h == 0) {
            s.push_str(D[t]);
        }
        s.push('十');
    }
    if u > 0 {
        s.push_str(D[u]);
    }
    s
}

/// `base` for the first round through a word list, then `base` + numeral, so names stay unique.
fn numbered(words: &[&str], i: usize) -> String {
    let round = i / words.len();
    let w = words[i % words.len()];
    if round == 0 { w.to_string() } else { format!("{w}{}", numeral(round + 1)) }
}

/// Code and name of the `i`-th district. Beyond the 18 real ones the codes continue in the
/// unused 540240..540299 range, then in 549001.. (no real prefecture uses 5490), so they stay
/// 6 digits, unique and ascending.
pub(super) fn district(i: usize) -> (String, String) {
    if let Some((c, n)) = SHIGATSE_DISTRICTS.get(i) {
        return (c.to_string(), n.to_string());
    }
    let k = i - SHIGATSE_DISTRICTS.len();
    let code = if k < 60 { 540240 + k } else { 549001 + (k - 60) };
    assert!(code <= 549999, "too many demo districts");
    (code.to_string(), format!("{}新区", numbered(&DISTRICT_WORDS, k)))
}

pub(super) fn street(i: usize) -> String {
    format!("{}街道", numbered(&STREET_WORDS, i))
}

pub(super) fn community(i: usize) -> String {
    format!("{}社区", numbered(&COMMUNITY_WORDS, i))
}

const SURNAMES: [&str; 16] =
    ["王", "李", "张", "刘", "陈", "杨", "赵", "黄", "周", "吴", "徐", "孙", "马", "朱", "胡", "郭"];
const GIVEN: [&str; 20] = [
    "建国", "丽", "强", "敏", "军", "静", "磊", "洋", "艳", "勇", "平", "刚", "杰", "娟", "涛", "明", "超", "霞",
    "旦增", "卓玛",
];

/// The `i`-th person's name: surname and given name, unique for the first 320.
pub(super) fn person(i: usize) -> String {
    let base = format!("{}{}", SURNAMES[i % SURNAMES.len()], GIVEN[(i / SURNAMES.len()) % GIVEN.len()]);
    let round = i / (SURNAMES.len() * GIVEN.len());
    if round == 0 { base } else { format!("{base}{}", numeral(round + 1)) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numerals() {
        assert_eq!(numeral(1), "一");
        assert_eq!(numeral(10), "十");
        assert_eq!(numeral(11), "十一");
        assert_eq!(numeral(20), "二十");
        assert_eq!(numeral(105), "一百零五");
        assert_eq!(numeral(110), "一百一十");
    }

    #[test]
    fn district_codes_unique_and_ascending() {
        let codes: Vec<String> = (0..200).map(|i| district(i).0).collect();
        assert!(codes.iter().all(|c| c.len() == 6 && c.bytes().all(|b| b.is_ascii_digit())));
        assert!(codes.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(district(0).1, "桑珠孜区");
        assert_eq!(district(3), ("540223".to_string(), "定日县".to_string()));
    }

    #[test]
    fn names_unique() {
        let s: std::collections::BTreeSet<String> = (0..500).map(community).collect();
        assert_eq!(s.len(), 500);
        let s: std::collections::BTreeSet<String> = (0..300).map(street).collect();
        assert_eq!(s.len(), 300);
        assert_eq!(street(0), "城南街道");
        assert_eq!(community(0), "扎西宗社区");
    }
}
