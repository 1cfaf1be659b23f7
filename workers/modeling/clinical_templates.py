"""Section templates of generated clinical notes, each tagged ``train`` or ``held``.

A note is a run of sections in record order (Chinese: 一般情况/主诉/现病史/既往史/查体/辅助检查/
诊断/处理/联系方式; English: header/CC/HPI/PMH/exam/results/assessment/plan/contact), one
template per section drawn from the split's own templates, so held-out notes share no template
with training. ``{TYPE}`` or ``{TYPE:variant}`` is an entity slot (``{ID:card}`` is an ID written
as an identity-card number); a lower-case ``{slot}`` is plain filler text (age, duration, vital
signs, a result) that carries no entity. Several templates carry no entity of a type, or none at
all, and several negate (``否认``, ``无``, ``denies``) so that context, not position, marks a span.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Section:
    """One section of a note: how often it appears, and its tagged templates."""

    name: str
    probability: float
    templates: tuple[tuple[str, str], ...]  # (split, text)


ZH_SECTIONS: tuple[Section, ...] = (
    Section("intro", 1.0, (
        ("train", "患者{PERSON}，{sex}，{age}岁。"),
        ("train", "患者{PERSON}，{sex}，{age}岁，住院号{ID:record}。"),
        ("train", "姓名：{PERSON}，性别：{sex}，年龄：{age}岁，门诊号：{ID:record}。"),
        ("held", "{PERSON}，{sex}性，{age}岁，病案号{ID:record}。"),
        ("held", "患者姓名{PERSON}，{age}岁，{sex}性。"),
    )),
    Section("cc", 1.0, (
        ("train", "主诉：{SYMPTOM}{dur}。"),
        ("train", "主诉：{SYMPTOM}伴{SYMPTOM}{dur}。"),
        ("train", "主诉：{SYMPTOM}{dur}，加重{dur2}。"),
        ("held", "主诉：{SYMPTOM}、{SYMPTOM}{dur}。"),
        ("held", "主诉：{dur}前出现{SYMPTOM}。"),
    )),
    Section("hpi", 0.85, (
        ("train", "现病史：患者{dur}前无明显诱因出现{SYMPTOM}，伴{SYMPTOM}，无{SYMPTOM}。"),
        ("train", "现病史：患者{dur}前受凉后出现{SYMPTOM}，自服{DRUG}后未见好转。"),
        ("train", "现病史：{dur}前开始出现{SYMPTOM}，以{BODY_PART}为主，休息后可缓解。"),
        ("train", "现病史：患者{dur}前于{ORG}就诊，查{TEST}提示异常，未予特殊处理。"),
        ("train", "现病史：患者近{dur}来{SYMPTOM}逐渐加重，否认{SYMPTOM}。"),
        ("held", "现病史：缘于{dur}前劳累后出现{SYMPTOM}，部位在{BODY_PART}，同时有{SYMPTOM}。"),
        ("held", "现病史：{dur}前曾在{ORG}完善{TEST}，给予{DRUG}治疗，效果欠佳。"),
        ("held", "现病史：自述{dur}来{SYMPTOM}明显，夜间为甚，不伴{SYMPTOM}。"),
    )),
    Section("pmh", 0.7, (
        ("train", "既往史：{DIAGNOSIS}病史{years}年，长期口服{DRUG}{DOSE}。"),
        ("train", "既往史：既往体健，否认{DIAGNOSIS}、{DIAGNOSIS}病史，否认药物过敏史。"),
        ("train", "既往史：有{DIAGNOSIS}病史，规律服用{DRUG}，{DOSE}。"),
        ("train", "既往史：否认传染病史及手术外伤史。"),
        ("held", "既往史：{years}年前诊断为{DIAGNOSIS}，目前使用{DRUG}{DOSE}控制。"),
        ("held", "既往史：患{DIAGNOSIS}多年，否认手术史，否认食物及药物过敏。"),
    )),
    Section("exam", 0.6, (
        ("train", "查体：T {temp}℃，P {hr}次/分，BP {bp}mmHg，{BODY_PART}未见异常。"),
        ("train", "查体：神志清，精神可，{BODY_PART}压痛阳性，{BODY_PART}未触及包块。"),
        ("train", "查体：体温{temp}℃，心率{hr}次/分，{BODY_PART}触诊未及明显异常。"),
        ("held", "体格检查：BP {bp}mmHg，{BODY_PART}未见明显异常，余无阳性体征。"),
        ("held", "查体：重点检查{BODY_PART}及{BODY_PART}，均未见明显异常。"),
    )),
    Section("results", 0.6, (
        ("train", "辅助检查：{TEST}示{result}。"),
        ("train", "辅助检查：{TEST}示{result}，{TEST}未见明显异常。"),
        ("train", "辅助检查：{TEST}结果{result}。"),
        ("held", "辅助检查：已完善{TEST}及{TEST}，结果{result}。"),
        ("held", "实验室检查：{TEST}提示{result}。"),
    )),
    Section("dx", 0.9, (
        ("train", "诊断：{DIAGNOSIS}。"),
        ("train", "初步诊断：1.{DIAGNOSIS} 2.{DIAGNOSIS}。"),
        ("train", "诊断：{DIAGNOSIS}；{DIAGNOSIS}待排。"),
        ("held", "入院诊断：{DIAGNOSIS}，{DIAGNOSIS}？"),
        ("held", "考虑{DIAGNOSIS}可能性大。"),
    )),
    Section("rx", 0.9, (
        ("train", "处理：予{DRUG}{DOSE}口服。"),
        ("train", "医嘱：{DRUG}，{DOSE}；{DRUG}，{DOSE}。"),
        ("train", "治疗：给予{DRUG}{DOSE}静滴，{DRUG}{DOSE}口服。"),
        ("train", "处理：停用{DRUG}，改为{DRUG}{DOSE}。"),
        ("held", "用药：{DRUG} {DOSE}，连用{days}天。"),
        ("held", "嘱出院后继续服用{DRUG}，{DOSE}，定期复查{TEST}。"),
    )),
    Section("contact", 0.55, (
        ("train", "联系电话：{PHONE}。"),
        ("train", "联系电话：{PHONE}，邮箱：{EMAIL}。"),
        ("train", "家属{PERSON}，电话{PHONE}。"),
        ("train", "家庭住址：{ADDRESS}。"),
        ("train", "身份证号：{ID:card}。"),
        ("held", "现住{ADDRESS}，联系方式{PHONE}。"),
        ("held", "电子邮箱{EMAIL}，紧急联系人{PERSON}，身份证{ID:card}。"),
        ("held", "主治医师：{PERSON}（{ORG}）。"),
    )),
)  # fmt: skip

EN_SECTIONS: tuple[Section, ...] = (
    Section("header", 1.0, (
        ("train", "Patient: {PERSON}, {age}-year-old {sex}. MRN {ID:record}."),
        ("train", "{PERSON} is a {age}-year-old {sex} seen in clinic today."),
        ("train", "Name: {PERSON}. Age: {age}. Record no. {ID:record}."),
        ("held", "Pt {PERSON} ({age}, {sex}), chart number {ID:record}."),
        ("held", "Seen today: {PERSON}, age {age}."),
    )),
    Section("cc", 1.0, (
        ("train", "Chief complaint: {SYMPTOM} for {dur}."),
        ("train", "CC: {SYMPTOM} and {SYMPTOM} x {dur}."),
        ("train", "Presents with {SYMPTOM} since {day}."),
        ("held", "Reason for visit: {SYMPTOM}, {SYMPTOM}."),
        ("held", "Complains of {dur} of {SYMPTOM}."),
    )),
    Section("hpi", 0.85, (
        ("train", "HPI: Reports {SYMPTOM} for {dur}, with discomfort in the {BODY_PART}; "
                  "denies {SYMPTOM} or {SYMPTOM}."),
        ("train", "HPI: Took {DRUG} at home without relief. No {SYMPTOM}."),
        ("train", "HPI: Onset {dur} ago after a viral illness, with {SYMPTOM} and {SYMPTOM}."),
        ("train", "HPI: Seen at {ORG} last week; {TEST} was reportedly normal."),
        ("held", "History: gradual onset of {SYMPTOM} over {dur}, worse at night; "
                 "discomfort localized to the {BODY_PART}."),
        ("held", "Interval history: tried {DRUG} {DOSE} with partial relief; "
                 "now also notes {SYMPTOM}."),
    )),
    Section("pmh", 0.7, (
        ("train", "PMH: {DIAGNOSIS}, {DIAGNOSIS}. Home meds: {DRUG} {DOSE}."),
        ("train", "Past history of {DIAGNOSIS}, on {DRUG} {DOSE}."),
        ("train", "No known drug allergies. No prior surgeries."),
        ("train", "Denies history of {DIAGNOSIS}."),
        ("held", "Medical history significant for {DIAGNOSIS}; takes {DRUG} {DOSE}."),
        ("held", "Background: {DIAGNOSIS} diagnosed {years} years ago. Allergic to {DRUG}."),
    )),
    Section("exam", 0.6, (
        ("train", "Exam: T {temp} C, HR {hr}, BP {bp}. Tenderness over the {BODY_PART}."),
        ("train", "On exam, tenderness noted over the {BODY_PART}; {BODY_PART} unremarkable."),
        ("train", "Vitals stable. No acute distress. Exam of the {BODY_PART} normal."),
        ("held", "Physical exam: {BODY_PART} and {BODY_PART} examined, no abnormality detected."),
        ("held", "Examination focused on the {BODY_PART}, otherwise unremarkable; BP {bp}."),
    )),
    Section("results", 0.6, (
        ("train", "Labs: {TEST} {result}; {TEST} pending."),
        ("train", "Results: {TEST} came back {result}."),
        ("held", "Results: {TEST} and {TEST} both {result}."),
        ("held", "Ordered {TEST}; the prior {TEST} was {result}."),
    )),
    Section("assessment", 0.9, (
        ("train", "Assessment: {DIAGNOSIS}."),
        ("train", "Assessment: likely {DIAGNOSIS}, rule out {DIAGNOSIS}."),
        ("train", "Impression: {DIAGNOSIS} presenting with {SYMPTOM}."),
        ("held", "A/P: {DIAGNOSIS}, stable. Differential includes {DIAGNOSIS}."),
        ("held", "Working diagnosis: {DIAGNOSIS}."),
    )),
    Section("plan", 0.9, (
        ("train", "Plan: start {DRUG} {DOSE}; stop {DRUG}."),
        ("train", "Plan: continue {DRUG} {DOSE}, follow up in {days} days."),
        ("train", "Rx: {DRUG} {DOSE}. Repeat {TEST} in {days} days."),
        ("held", "Plan: switch to {DRUG} {DOSE} and recheck {TEST}."),
        ("held", "Discharged on {DRUG} {DOSE} for {days} days."),
    )),
    Section("contact", 0.55, (
        ("train", "Contact: {PHONE}, {EMAIL}."),
        ("train", "Lives at {ADDRESS}. Phone {PHONE}."),
        ("train", "Emergency contact {PERSON}, {PHONE}."),
        ("train", "Insurance ID {ID:insurance}."),
        ("held", "Preferred phone {PHONE}; home address {ADDRESS}."),
        ("held", "Send results to {EMAIL}. Attending: Dr. {PERSON}, {ORG}."),
    )),
)  # fmt: skip

SECTIONS: dict[str, tuple[Section, ...]] = {"zh": ZH_SECTIONS, "en": EN_SECTIONS}
