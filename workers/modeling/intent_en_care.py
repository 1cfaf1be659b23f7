"""English templates of the clinic intents: ``{label: (train templates, held templates)}``.

symptom_report templates name no drug and ask for no booking; prescription templates always
name a medicine or a prescription; appointment templates include cancelling a visit.
"""

from __future__ import annotations

Templates = dict[str, tuple[tuple[str, ...], tuple[str, ...]]]

TEMPLATES: Templates = {
    "symptom_report": (
        (
            "I've been having {SYMPTOM} for {DURATION}",
            "my kid has {SYMPTOM} and {SYMPTOM}, should I worry?",
            "woke up with {SYMPTOM} and {SYMPTOM}",
            "is {SYMPTOM} after eating normal?",
            "I keep getting {SYMPTOM}, what could it be",
            "my {SYMPTOM} started {DATE} and is getting worse",
            "feeling really unwell, {SYMPTOM} and no energy",
            "my mom has {SYMPTOM} and she is 78",
            "bad {SYMPTOM} that won't go away",
            "I have {SYMPTOM}, is it something serious?",
            "{SYMPTOM} for {DURATION} now, should I go to the ER",
            "my temperature is 39 and I have {SYMPTOM}",
            "got {SYMPTOM} since I came back from {CITY}",
            "sharp pain in my side when I breathe",
            "I fell and my wrist is swollen and purple",
            "experiencing {SYMPTOM} at night, can't sleep",
            "hey doc, {SYMPTOM} and feeling weak",
            "my daughter is 6 and has had {SYMPTOM} for {DURATION}, today she also has "
            "{SYMPTOM} and won't eat much. is this something to worry about?",
        ),
        (
            "For {DURATION} I've been dealing with {SYMPTOM}, it's worse in the evening",
            "my toddler woke up with {SYMPTOM}, is that serious?",
            "Noticed {SYMPTOM} alongside {SYMPTOM}, what should I do",
            "i feel awful, {SYMPTOM} and I can barely stand",
            "my husband started getting {SYMPTOM} {DATE}",
            "is it normal to get {SYMPTOM} after a workout",
            "constant {SYMPTOM}, keeps me up all night",
        ),
    ),
    "appointment": (
        (
            "I need to book an appointment with {DOCTOR}",
            "can I see a doctor {WHEN}?",
            "I'd like to reschedule my appointment, can we do {WHEN}?",
            "cancel my appointment {WHEN}, something came up",
            "is {DOCTOR} available {WHEN}",
            "how do I book a {TEST}",
            "I need an appointment at {DEPT}",
            "what time is my appointment {WHEN}",
            "can my {TEST} be moved to another slot, {WHEN} maybe",
            "do you have any openings {WHEN}",
            "book me in with {DOCTOR} pls",
            "i'm running late for my appointment, can I still come",
            "I want a follow-up visit with {DOCTOR}",
            "can't make it {WHEN}, please cancel my visit",
            "earliest available slot at {DEPT}?",
            "I'd like a telehealth appointment instead of coming in",
            "please confirm my booking {WHEN}",
        ),
        (
            "Could I schedule a consultation with {DOCTOR} {WHEN}?",
            "please push my {TEST} back a few days",
            "I won't be able to attend {WHEN}, call off the visit",
            "is there a free slot at {DEPT} {WHEN}",
            "how far ahead can I reserve a time with {DOCTOR}",
            "need to see someone at {DEPT} asap, any availability?",
            "my visit is {WHEN} but I need a different day",
        ),
    ),
    "prescription": (
        (
            "I need a refill of my {DRUG}",
            "can you renew my prescription for {DRUG}",
            "how many {DRUG} can I take a day",
            "is it safe to take {DRUG} with {DRUG}",
            "I ran out of {DRUG}, can the doctor send a new prescription",
            "my pharmacy says the prescription for {DRUG} expired",
            "I forgot to take my {DRUG} this morning, should I double up",
            "can I switch from {DRUG} {DOSE} to a lower dose",
            "does {DRUG} make you drowsy",
            "send my prescription to a different pharmacy please",
            "the {DRUG} gives me an upset stomach, is that a side effect",
            "can I drink alcohol on {DRUG}",
            "how long do I need to keep taking {DRUG}",
            "need my {DRUG} {DOSE} refilled asap",
            "is there a generic version of {DRUG}",
            "doctor prescribed {DRUG} {DOSE} twice a day, with food or without?",
            "my repeat prescription hasn't been approved yet",
        ),
        (
            "Could {DOCTOR} authorize more {DRUG} for me?",
            "what happens if I skip a dose of {DRUG}",
            "the chemist won't hand over my {DRUG} without a new script",
            "am I allowed to take {DRUG} while pregnant",
            "please extend my {DRUG} {DOSE} supply for another three months",
            "should {DRUG} be taken in the morning or evening",
            "I'm almost out of my meds, requesting a repeat of {DRUG}",
        ),
    ),
}
