"""English slot fillers of the generated support-chat turns: ``{SLOT: (train, held values)}``.

No value is shared between the two sides, nor is one side's value a word sequence inside the
other side's (``"iPad"`` train would leak into a held ``"the iPad app"``); held items use held
values only. Weekdays and months are split too (train: Monday, Tuesday, Thursday, March, April;
held: Wednesday, Friday, Saturday, Sunday, June), and no template names one.

``NUMBER_FORMATS`` are the generated slots: each ``9`` becomes a random digit (the first one
non-zero); the two splits write order numbers and amounts in different formats.
"""

from __future__ import annotations

Pools = dict[str, tuple[tuple[str, ...], tuple[str, ...]]]

FILLERS: Pools = {
    "PRODUCT": (
        ("wireless earbuds", "air fryer", "running shoes", "yoga mat", "coffee grinder",
         "phone case", "desk lamp", "winter jacket", "bluetooth speaker", "electric toothbrush",
         "hiking backpack", "smartwatch", "kettle", "bed sheets", "gaming mouse", "sunglasses"),
        ("standing desk", "blender", "rain boots", "office chair", "hair dryer", "baby monitor",
         "robot vacuum", "mechanical keyboard", "duvet cover", "water bottle", "rice cooker",
         "leather wallet", "ring light", "tablet stand"),
    ),
    "GADGET": (
        ("smart speaker", "fitness tracker", "wireless earbuds", "smartwatch",
         "security camera"),
        ("smart doorbell", "e-reader", "dashcam", "smart thermostat", "wifi printer"),
    ),
    "APP": (
        ("the Android app", "the iOS app", "the web dashboard", "the desktop app", "the TV app",
         "the seller portal"),
        ("the tablet app", "the Mac app", "the browser extension", "the mobile site",
         "the Windows app", "the watch app"),
    ),
    "DEVICE": (
        ("iPhone 13", "Galaxy S21", "Pixel 6", "MacBook Air", "iPad", "Windows laptop"),
        ("OnePlus 9", "Redmi Note 10", "Surface Pro", "Dell XPS", "Moto G", "Chromebook"),
    ),
    "COURIER": (
        ("UPS", "FedEx", "DHL", "USPS", "Royal Mail", "Amazon Logistics"),
        ("DPD", "Evri", "Canada Post", "GLS", "Australia Post", "OnTrac"),
    ),
    "DATE": (
        ("last Monday", "on the 3rd", "two days ago", "last week", "on March 2", "this morning",
         "Tuesday night", "in April"),
        ("on Friday", "on the 21st", "over the weekend", "on June 9", "three weeks ago",
         "earlier today", "Saturday morning"),
    ),
    "WHEN": (
        ("tomorrow morning", "next Tuesday", "on Thursday at 3pm", "Monday afternoon",
         "on the 12th", "next week", "at 10:30 tomorrow"),
        ("on Wednesday evening", "this Friday", "on the 27th", "Saturday at noon",
         "Sunday morning", "at 4:15 on Wednesday"),
    ),
    "DURATION": (
        ("two days", "three days", "a week", "48 hours", "a fortnight"),
        ("about ten days", "a couple of hours", "four or five days", "almost a month",
         "six weeks"),
    ),
    "PLAN": (
        ("Premium plan", "annual membership", "Pro subscription", "family plan",
         "meal kit subscription", "music subscription"),
        ("Gold tier", "student plan", "monthly box", "Plus membership", "streaming bundle",
         "cloud storage plan"),
    ),
    "PAYMETHOD": (
        ("my Visa", "PayPal", "Apple Pay", "my debit card", "Amex", "my gift card"),
        ("Mastercard", "Google Pay", "Klarna", "my credit card", "bank transfer", "Venmo"),
    ),
    "ERROR": (
        ("error 500", "'something went wrong'", "a blank white screen", "error code 0x80070005",
         "'session expired'", "'network error'"),
        ("'unable to connect'", "error 403", "a spinning wheel", "'request timed out'",
         "error E-17", "a frozen screen"),
    ),
    "STAFF": (
        ("your agent", "the delivery guy", "the cashier", "your support rep", "the store clerk"),
        ("the manager", "the driver", "the technician", "the receptionist", "the installer"),
    ),
    "ATTR": (
        ("waterproof", "machine washable", "noise cancelling", "compatible with Android",
         "dishwasher safe", "vegan"),
        ("BPA free", "foldable", "battery powered", "true to size", "made in the EU",
         "suitable for kids"),
    ),
    "COLOR": (
        ("black", "navy blue", "red", "white"),
        ("olive green", "beige", "grey", "pink"),
    ),
    "DRUG": (
        ("metformin", "lisinopril", "amoxicillin", "ibuprofen", "atorvastatin", "omeprazole",
         "sertraline", "levothyroxine"),
        ("amlodipine", "losartan", "gabapentin", "montelukast", "escitalopram", "pantoprazole",
         "prednisone"),
    ),
    "DOSE": (
        ("500 mg", "20mg", "10 mg", "1 g"),
        ("40 mg", "250mg", "5 mg", "75mg"),
    ),
    "SYMPTOM": (
        ("headache", "fever", "sore throat", "dry cough", "back pain", "nausea", "dizziness",
         "stomach ache", "a rash on my arm", "chills"),
        ("chest tightness", "ear pain", "blurred vision", "runny nose", "joint pain",
         "heartburn", "night sweats", "numb fingers", "swollen ankles"),
    ),
    "DOCTOR": (
        ("Dr. Patel", "Dr. Smith", "Dr. Nguyen", "Dr. Garcia", "Dr. Brown"),
        ("Dr. Okafor", "Dr. Rossi", "Dr. Kim", "Dr. Hughes", "Dr. Lindqvist"),
    ),
    "DEPT": (
        ("dermatology", "cardiology", "the dentist", "physio", "the eye doctor"),
        ("ENT", "pediatrics", "orthopedics", "the allergy clinic", "the women's clinic"),
    ),
    "TEST": (
        ("blood test", "MRI", "x-ray", "vaccination"),
        ("ultrasound", "ECG", "colonoscopy", "hearing check"),
    ),
    "CITY": (
        ("Paris", "Tokyo", "Chicago", "London", "Berlin"),
        ("Madrid", "Toronto", "Sydney", "Cairo", "Seoul"),
    ),
    "COUNTRY": (
        ("Brazil", "Japan", "Mexico", "Egypt"),
        ("Peru", "Norway", "Kenya", "Vietnam"),
    ),
    "TOPIC": (
        ("black holes", "the Roman Empire", "jazz", "climate change", "the stock market",
         "artificial intelligence", "dinosaurs", "democracy", "photosynthesis", "the Cold War"),
        ("the French Revolution", "quantum physics", "modern art", "volcanoes",
         "cryptocurrency", "the moon landing", "socialism", "gravity", "the Renaissance"),
    ),
    "FOOD": (
        ("pizza", "sushi", "tacos", "chocolate", "ramen"),
        ("pasta", "dumplings", "curry", "pancakes", "ice cream"),
    ),
    "MOVIE": (
        ("Star Wars", "Harry Potter", "The Godfather", "Titanic"),
        ("Inception", "The Matrix", "Jurassic Park", "Pride and Prejudice"),
    ),
    "SPORT": (
        ("football", "basketball", "tennis"),
        ("cricket", "baseball", "golf", "hockey"),
    ),
    "ANIMAL": (
        ("cats", "dogs", "penguins", "dolphins"),
        ("octopuses", "owls", "giraffes", "crows"),
    ),
    "FAMOUS": (
        ("Einstein", "Shakespeare", "Cleopatra", "Elon Musk"),
        ("Mozart", "Napoleon", "Marie Curie", "Frida Kahlo"),
    ),
    "HOBBY": (
        ("painting", "chess", "gardening", "baking"),
        ("knitting", "surfing", "photography", "rock climbing"),
    ),
    "HELLO": (
        ("hi", "hello", "hey", "good morning"),
        ("good evening", "hiya", "howdy", "greetings", "good afternoon", "yo"),
    ),
    "THANKS": (
        ("thanks", "thank you", "thx", "cheers", "thanks a lot"),
        ("ty", "much appreciated", "merci", "tysm", "I'm grateful", "bless you"),
    ),
    "BYE": (
        ("bye", "goodbye", "see you", "take care", "have a nice day"),
        ("cya", "farewell", "ttyl", "catch you later", "so long", "all the best"),
    ),
}  # fmt: skip

NUMBER_FORMATS: Pools = {
    "ORDER": (("#9999999", "ORD-99999", "#99999999"), ("SO-9999-9999", "W999999999")),
    "AMOUNT": (("$99.99", "$999", "€99", "$9.99"), ("USD 99.00", "£99.50", "99 bucks")),
}
