"""Chinese templates of the clinic intents: ``{label: (train templates, held templates)}``.

symptom_report templates name no drug and ask for no booking; prescription templates always
name a medicine or a prescription; appointment templates include cancelling a visit.
"""

from __future__ import annotations

Templates = dict[str, tuple[tuple[str, ...], tuple[str, ...]]]

TEMPLATES: Templates = {
    "symptom_report": (
        (
            "我{SYMPTOM}{DURATION}了",
            "孩子{SYMPTOM}还{SYMPTOM}，要紧吗",
            "早上起来就{SYMPTOM}，还有点{SYMPTOM}",
            "吃完饭就{SYMPTOM}正常吗",
            "老是{SYMPTOM}，是什么原因",
            "{DATE}开始{SYMPTOM}，越来越严重",
            "浑身没劲，{SYMPTOM}",
            "我妈78岁了，最近{SYMPTOM}",
            "{SYMPTOM}一直不好",
            "我{SYMPTOM}，严不严重啊",
            "{SYMPTOM}{DURATION}了，要不要去急诊",
            "体温39度，还{SYMPTOM}",
            "从{CITY}回来以后就{SYMPTOM}",
            "呼吸的时候侧腰刺痛",
            "摔了一跤，手腕肿了",
            "晚上{SYMPTOM}睡不着",
            "医生，{SYMPTOM}，浑身乏力",
            "孩子6岁，{SYMPTOM}{DURATION}了，今天又开始{SYMPTOM}，饭也不怎么吃，需要担心吗",
        ),
        (
            "这{DURATION}一直{SYMPTOM}，晚上更厉害",
            "宝宝一觉醒来{SYMPTOM}，严重吗",
            "{SYMPTOM}的同时还{SYMPTOM}，该怎么办",
            "难受死了，{SYMPTOM}，站都站不稳",
            "我老公{DATE}开始{SYMPTOM}",
            "运动完{SYMPTOM}正常吗",
            "一直{SYMPTOM}，整晚都睡不好",
        ),
    ),
    "appointment": (
        (
            "我想挂{DOCTOR}的号",
            "{WHEN}能看医生吗",
            "预约改到{WHEN}可以吗",
            "{WHEN}的预约取消吧，临时有事",
            "{DOCTOR}{WHEN}出诊吗",
            "怎么预约{TEST}",
            "挂个{DEPT}的号",
            "我{WHEN}的预约是几点来着",
            "{TEST}能改到{WHEN}吗",
            "{WHEN}还有号吗",
            "帮我约一下{DOCTOR}",
            "我要迟到了，预约还有效吗",
            "想约{DOCTOR}复诊",
            "{WHEN}去不了了，帮我取消预约",
            "{DEPT}最早什么时候能约上",
            "可以线上问诊吗，不想跑医院",
            "帮我确认一下{WHEN}的预约",
        ),
        (
            "能不能{WHEN}约{DOCTOR}的门诊",
            "{TEST}能不能往后推几天",
            "{WHEN}我去不了，那个就诊安排撤掉吧",
            "{DEPT}{WHEN}还有空位吗",
            "{DOCTOR}的号最多能提前多久约",
            "急着看{DEPT}，最近有没有号",
            "就诊时间是{WHEN}，能换个日子吗",
        ),
    ),
    "prescription": (
        (
            "{DRUG}吃完了，想再开点",
            "能帮我续开{DRUG}的处方吗",
            "{DRUG}一天最多吃几次",
            "{DRUG}和{DRUG}能一起吃吗",
            "{DRUG}没了，医生能再开个处方吗",
            "药房说我{DRUG}的处方过期了",
            "今天早上忘了吃{DRUG}，要补吗",
            "{DRUG}能不能从{DOSE}减量",
            "吃{DRUG}会犯困吗",
            "处方能转到别的药房吗",
            "吃了{DRUG}胃不舒服，是副作用吗",
            "吃{DRUG}期间能喝酒吗",
            "{DRUG}要吃多久",
            "急需续{DRUG}，每次{DOSE}",
            "{DRUG}有没有便宜点的仿制药",
            "医生开的{DRUG}一次{DOSE}，饭前还是饭后吃",
            "我的长期处方还没审核通过",
        ),
        (
            "能请{DOCTOR}再给我开点{DRUG}吗",
            "漏服一次{DRUG}会怎么样",
            "药店说没有新处方不给拿{DRUG}",
            "怀孕了还能吃{DRUG}吗",
            "{DRUG}按{DOSE}再多配三个月的量",
            "{DRUG}是早上吃还是晚上吃",
            "药快吃完了，想申请续方，是{DRUG}",
        ),
    ),
}
