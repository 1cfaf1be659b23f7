"""English clinical and personal-name vocabularies.

Drugs come from the drug_named_entity_recognition dictionary (marketed drugs only: a MedlinePlus
or NHS page), with their brand names; every variant's *base* is its canonical name, so a brand
and its generic always share a split pool. No offline English list of symptoms, diagnoses,
tests or body parts exists, so those, person names, streets and cities are written here.
Builders return ``{term: base}`` like the Chinese ones.
"""

from __future__ import annotations

import re
from functools import cache

from workers.modeling.vocab import read_drug_dictionary

Terms = dict[str, str]


def _terms(text: str) -> tuple[str, ...]:
    return tuple(t for t in (s.strip() for s in text.split(";")) if t)


SYMPTOMS = _terms("""
chest pain; chest tightness; shortness of breath; wheezing; dry cough; productive cough;
hemoptysis; fever; chills; night sweats; fatigue; malaise; weight loss; weight gain;
loss of appetite; nausea; vomiting; diarrhea; constipation; abdominal pain; bloating; heartburn;
dysphagia; odynophagia; hematemesis; melena; rectal bleeding; jaundice; dark urine; dysuria;
urinary frequency; urinary urgency; hematuria; nocturia; urinary retention; flank pain;
pelvic pain; vaginal discharge; heavy menstrual bleeding; headache; dizziness; vertigo;
lightheadedness; syncope; blurred vision; double vision; photophobia; eye pain; tinnitus;
hearing loss; ear pain; sore throat; hoarseness; nasal congestion; runny nose; sneezing;
facial pain; neck pain; neck stiffness; back pain; low back pain; joint pain; joint swelling;
morning stiffness; muscle aches; muscle weakness; muscle cramps; numbness; tingling; tremor;
seizures; confusion; memory loss; difficulty concentrating; slurred speech; facial droop;
unsteady gait; palpitations; leg swelling; ankle swelling; calf pain; cold extremities;
orthopnea; exertional dyspnea; rash; itching; hives; easy bruising; hair loss; dry skin;
excessive thirst; excessive sweating; heat intolerance; cold intolerance; insomnia;
daytime sleepiness; snoring; anxiety; low mood; irritability; hallucinations; hot flashes;
swollen lymph nodes; mouth ulcers; toothache; bleeding gums; nosebleeds; pleuritic chest pain;
shoulder pain; knee pain; hip pain; wrist pain; foot pain; heel pain; burning feet;
restless legs; pins and needles; loss of balance; fainting; early satiety; belching;
flatulence; tenesmus; anal itching; cloudy urine; foul-smelling urine; rapid breathing;
cyanosis; pallor; clammy skin; dry mouth; bad breath; loss of taste; loss of smell;
sinus pressure; postnasal drip; ear discharge; eye redness; watery eyes; itchy eyes; floaters;
jaw pain; throat swelling; swollen tongue; lip swelling; leg cramps; leg weakness; groin pain;
testicular pain; breast pain; breast lump; nipple discharge; missed period; spotting;
decreased urine output; urinary incontinence; agitation; lethargy; drowsiness; disorientation;
panic attacks; racing thoughts; nightmares; weakness; generalized itching; tender lump
""")

DIAGNOSES = _terms("""
hypertension; type 2 diabetes mellitus; type 1 diabetes mellitus; hyperlipidemia;
coronary artery disease; congestive heart failure; atrial fibrillation; atrial flutter;
myocardial infarction; unstable angina; stable angina; aortic stenosis; mitral regurgitation;
pericarditis; myocarditis; endocarditis; dilated cardiomyopathy; hypertrophic cardiomyopathy;
deep vein thrombosis; pulmonary embolism; peripheral artery disease; abdominal aortic aneurysm;
asthma; chronic obstructive pulmonary disease; community-acquired pneumonia;
aspiration pneumonia; acute bronchitis; bronchiectasis; pulmonary fibrosis; pleural effusion;
pneumothorax; tuberculosis; obstructive sleep apnea; sarcoidosis; lung cancer; influenza;
COVID-19; acute sinusitis; allergic rhinitis; streptococcal pharyngitis; tonsillitis;
otitis media; otitis externa; conjunctivitis; glaucoma; cataract; macular degeneration;
diabetic retinopathy; gastroesophageal reflux disease; peptic ulcer disease; gastritis;
gastroenteritis; irritable bowel syndrome; Crohn's disease; ulcerative colitis; celiac disease;
diverticulitis; appendicitis; cholecystitis; cholelithiasis; acute pancreatitis;
chronic pancreatitis; liver cirrhosis; hepatitis B; hepatitis C; fatty liver disease;
colorectal cancer; hemorrhoids; anal fissure; small bowel obstruction;
urinary tract infection; pyelonephritis; nephrolithiasis; chronic kidney disease;
acute kidney injury; benign prostatic hyperplasia; prostatitis; prostate cancer;
bladder cancer; polycystic kidney disease; nephrotic syndrome; hypothyroidism;
hyperthyroidism; Graves' disease; Hashimoto's thyroiditis; thyroid nodule; Cushing's syndrome;
Addison's disease; osteoporosis; gout; rheumatoid arthritis; osteoarthritis;
psoriatic arthritis; ankylosing spondylitis; systemic lupus erythematosus; fibromyalgia;
polymyalgia rheumatica; carpal tunnel syndrome; rotator cuff tear; plantar fasciitis;
lumbar disc herniation; spinal stenosis; sciatica; scoliosis; iron deficiency anemia;
pernicious anemia; sickle cell disease; thalassemia; thrombocytopenia;
chronic lymphocytic leukemia; Hodgkin lymphoma; multiple myeloma; breast cancer;
ovarian cancer; cervical cancer; endometriosis; polycystic ovary syndrome; uterine fibroids;
pelvic inflammatory disease; preeclampsia; gestational diabetes; migraine; tension headache;
cluster headache; epilepsy; ischemic stroke; transient ischemic attack; Parkinson's disease;
Alzheimer's disease; multiple sclerosis; peripheral neuropathy; Bell's palsy;
trigeminal neuralgia; bacterial meningitis; viral encephalitis; major depressive disorder;
generalized anxiety disorder; bipolar disorder; schizophrenia; panic disorder;
post-traumatic stress disorder; attention deficit hyperactivity disorder; alcohol use disorder;
atopic dermatitis; psoriasis; cellulitis; acne vulgaris; rosacea; herpes zoster; impetigo;
scabies; melanoma; basal cell carcinoma; contact dermatitis; chronic urticaria; sepsis;
Lyme disease; HIV infection; infectious mononucleosis; measles; varicella; malaria;
dengue fever; anaphylaxis; dehydration; hyponatremia; hypokalemia; hyperkalemia;
metabolic syndrome; obesity; vitamin D deficiency; vitamin B12 deficiency; hemochromatosis;
Raynaud's phenomenon; benign paroxysmal positional vertigo; Meniere's disease;
complete heart block; sick sinus syndrome; aortic dissection; pulmonary hypertension;
interstitial lung disease; cystic fibrosis; pleurisy; hiatal hernia; inguinal hernia;
Barrett's esophagus; esophageal varices; hepatic encephalopathy; gallbladder polyp;
renal cell carcinoma; testicular torsion; erectile dysfunction; menopause syndrome;
hyperparathyroidism; diabetic ketoacidosis; septic arthritis; osteomyelitis; frozen shoulder;
tennis elbow; Achilles tendinitis; ankle sprain; hip fracture; compression fracture
""")

TESTS = _terms("""
complete blood count; basic metabolic panel; comprehensive metabolic panel; lipid panel;
hemoglobin A1c; fasting blood glucose; oral glucose tolerance test; thyroid function tests;
TSH; free T4; liver function tests; renal function panel; serum creatinine;
blood urea nitrogen; serum electrolytes; urinalysis; urine culture; blood cultures;
sputum culture; C-reactive protein; erythrocyte sedimentation rate; procalcitonin; troponin;
BNP; D-dimer; INR; prothrombin time; partial thromboplastin time; arterial blood gas;
serum lactate; ferritin; iron studies; vitamin B12 level; folate level; vitamin D level; PSA;
CA-125; CEA; HIV test; hepatitis panel; rapid strep test; influenza swab; COVID-19 PCR;
stool culture; fecal occult blood test; H. pylori breath test; pregnancy test; Pap smear;
ECG; echocardiogram; exercise stress test; Holter monitor; chest X-ray; abdominal ultrasound;
pelvic ultrasound; renal ultrasound; thyroid ultrasound; head CT; CT angiography;
CT pulmonary angiogram; brain MRI; lumbar spine MRI; bone density scan; mammogram;
colonoscopy; upper endoscopy; bronchoscopy; spirometry; pulmonary function tests; sleep study;
EEG; nerve conduction study; electromyography; lumbar puncture; skin biopsy;
bone marrow biopsy; carotid Doppler; venous duplex ultrasound; ankle-brachial index;
cardiac catheterization; PET scan; barium swallow; allergy skin testing; audiogram;
tympanometry; visual field test; slit lamp examination; urine drug screen;
blood alcohol level; serum amylase; serum lipase; uric acid level; rheumatoid factor;
antinuclear antibody; HLA-B27; creatine kinase; magnesium level; ammonia level;
cortisol level; ACTH stimulation test; coagulation panel; reticulocyte count;
peripheral blood smear; hepatitis B surface antigen; throat swab; wound culture
""")

BODY_PARTS = _terms("""
head; neck; chest; abdomen; lower back; upper back; left shoulder; right shoulder; left arm;
right arm; left elbow; right elbow; left wrist; right wrist; left hand; right hand; fingers;
left hip; right hip; left knee; right knee; left ankle; right ankle; left foot; right foot;
toes; heel; calf; thigh; groin; pelvis; lumbar spine; cervical spine; ribs; sternum; clavicle;
jaw; throat; tongue; left eye; right eye; left ear; right ear; nose; sinuses; forehead; scalp;
face; lungs; heart; liver; spleen; kidneys; bladder; stomach; colon; rectum; prostate;
uterus; ovaries; breast; lymph nodes; thyroid; right upper quadrant; left lower quadrant;
epigastrium; flank; buttocks; shin; forearm; upper arm; palate; tonsils; abdominal wall;
lower legs; left thumb; knuckles; temple; eyelid; cheek; collarbone; armpit; sacrum; tailbone
""")

GIVEN_NAMES = _terms("""
James; Mary; Robert; Patricia; John; Jennifer; Michael; Linda; David; Elizabeth; William;
Barbara; Richard; Susan; Joseph; Jessica; Thomas; Sarah; Charles; Karen; Daniel; Nancy;
Matthew; Lisa; Anthony; Margaret; Mark; Sandra; Steven; Ashley; Paul; Emily; Andrew; Donna;
Joshua; Michelle; Kevin; Carol; Brian; Amanda; George; Melissa; Edward; Deborah; Ronald;
Stephanie; Timothy; Rebecca; Jason; Laura; Ryan; Helen; Jacob; Sharon; Gary; Cynthia;
Nicholas; Kathleen; Eric; Amy; Jonathan; Shirley; Larry; Angela; Justin; Anna; Scott; Ruth;
Brandon; Brenda; Frank; Pamela; Gregory; Nicole; Samuel; Katherine; Alejandro; Sofia; Carlos;
Valentina; Diego; Camila; Mateo; Lucia; Javier; Isabella; Ahmed; Fatima; Omar; Aisha; Yusuf;
Layla; Hassan; Mariam; Tariq; Noor; Rahul; Priya; Arjun; Ananya; Vikram; Deepa; Sanjay;
Kavya; Ravi; Meera; Wei; Mei; Jun; Lian; Hiroshi; Yuki; Kenji; Sakura; Minjun; Jiwoo;
Seojun; Haeun; Tuan; Linh; Kwame; Ama; Chinedu; Ngozi; Tendai; Zanele; Oluwaseun; Amara;
Ivan; Olga; Dmitri; Natasha; Pavel; Irina; Lukas; Greta; Matteo; Giulia; Pierre; Camille;
Lars; Ingrid; Sean; Siobhan; Kai; Leilani; Tomas; Zofia; Mehmet; Elif; Dariush; Shirin
""")

SURNAMES = _terms("""
Smith; Johnson; Williams; Brown; Jones; Garcia; Miller; Davis; Rodriguez; Martinez;
Hernandez; Lopez; Gonzalez; Wilson; Anderson; Taylor; Moore; Jackson; Martin; Lee; Thompson;
White; Harris; Clark; Lewis; Robinson; Walker; Young; Allen; King; Wright; Scott; Torres;
Nguyen; Hill; Flores; Green; Adams; Nelson; Baker; Hall; Rivera; Campbell; Mitchell; Carter;
Roberts; Phillips; Evans; Turner; Parker; Collins; Edwards; Stewart; Morris; Murphy; Cook;
Rogers; Morgan; Peterson; Cooper; Reed; Bailey; Bell; Gomez; Kelly; Howard; Ward; Cox; Diaz;
Richardson; Wood; Watson; Brooks; Bennett; Gray; Reyes; Cruz; Hughes; Price; Myers;
Long; Foster; Sanders; Ross; Morales; Powell; Sullivan; Russell; Ortiz; Jenkins; Gutierrez;
Perry; Butler; Barnes; Fisher; Henderson; Coleman; Simmons; Patterson; Jordan; Reynolds;
Hamilton; Graham; Kim; Park; Choi; Chen; Wang; Liu; Zhang; Huang; Tanaka; Suzuki; Sato;
Watanabe; Patel; Shah; Singh; Kumar; Gupta; Iyer; Reddy; Khan; Hussain; Rahman; Haddad;
Nasser; Okafor; Adeyemi; Mensah; Mwangi; Banda; Dlamini; Ivanov; Petrov; Kowalski; Novak;
Horvat; Schmidt; Muller; Fischer; Weber; Rossi; Russo; Bianchi; Dubois; Moreau; Laurent;
Jansen; de Vries; Larsen; Nielsen; Lindqvist; O'Brien; Byrne; MacLeod; Yilmaz; Demir;
Tehrani; Cohen; Levi; Silva; Santos; Oliveira; Pereira; Costa; Tran; Pham; Le
""")

STREET_NAMES = _terms("""
Oak; Maple; Cedar; Pine; Elm; Birch; Willow; Chestnut; Walnut; Spruce; Hawthorn; Juniper;
Magnolia; Laurel; Sycamore; Poplar; Ash; Hickory; Aspen; Linden; Mill; Church; Station;
Market; Bridge; Park; Lake; River; Hill; Meadow; Orchard; Garden; Forest; Spring; Sunset;
Highland; Valley; Ridge; Harbor; Bay; Union; Liberty; Franklin; Washington; Lincoln;
Jefferson; Jackson; Monroe; Albert; Queen; King; Castle; Abbey; Chapel; Grove; Cherry;
Kingston; Wellington; Cambridge; Oxford; Windsor; Clifton; Beacon; Summit; Prospect;
Fairview; Greenwood; Lakeview; Riverside; Westfield; Northgate; Harvest; Foxglove; Heather
""")
STREET_TYPES = _terms("Street; Avenue; Road; Lane; Drive; Court; Boulevard; Way; Place; Terrace")

CITIES = _terms("""
Springfield; Riverton; Leeds; Manchester; Bristol; Glasgow; Cardiff; Dublin; Cork; Toronto;
Ottawa; Calgary; Halifax; Winnipeg; Boston; Chicago; Denver; Austin; Seattle; Portland;
Phoenix; Atlanta; Nashville; Baltimore; Cleveland; Pittsburgh; Sacramento; Tucson; Omaha;
Raleigh; Auckland; Sydney; Melbourne; Brisbane; Perth; Adelaide; Hobart; Cape Town; Durban;
Nairobi; Accra; Lagos; Mumbai; Pune; Singapore; Kuala Lumpur; Manila; Birmingham;
Liverpool; Sheffield; Nottingham; Leicester; Edinburgh; Aberdeen; Belfast; Galway;
Vancouver; Montreal; Quebec City; Albany; Buffalo; Dayton; Tulsa; Wichita; Boise; Spokane;
Fresno; Reno; Savannah; Charleston; Norwich; Exeter; Brighton
""")

_DRUG_NAME = re.compile(r"[a-z][a-z-]*(?: [a-z][a-z-]*){0,2}")
_DRUG_QUALIFIERS = frozenset(
    _terms(
        "buccal; patch; nasal; vaginal; otic; sublingual; implant; lozenge; liposomal; spray; "
        "powder; gel; urogenital; ophthalmic; topical; inhalation; injection; rectal; oral; "
        "transdermal; solution; drops; eye; ear; cream; ointment; shampoo; lotion; foam; film; "
        "tablets; suppository; low-dose; extended-release"
    )
)
_SIDE = re.compile(r"^(left|right) ")


def _drug_ok(name: str) -> bool:
    words = name.split()
    return (
        4 <= len(name) <= 25
        and _DRUG_NAME.fullmatch(name) is not None
        and "and" not in words
        and "vaccine" not in words
        and not _DRUG_QUALIFIERS.intersection(words)
        and re.search(r"-[a-z]{4}$", name) is None  # biosimilar suffixes such as -ldrm
    )


@cache
def drugs() -> Terms:
    """Marketed generic names (lower case) and their brand names (capitalised)."""
    d = read_drug_dictionary()
    out = {c: c for c in sorted(d.marketed) if _drug_ok(c)}
    for brand in sorted(d.brands):
        generic = d.canonical.get(brand, "")
        if generic in out and _drug_ok(brand) and brand not in out and " " not in brand:
            out[brand.capitalize()] = generic
    return out


def _plain(terms: tuple[str, ...]) -> Terms:
    return {t: t.lower() for t in terms}


@cache
def symptoms() -> Terms:
    return _plain(SYMPTOMS)


@cache
def diagnoses() -> Terms:
    return _plain(DIAGNOSES)


@cache
def tests() -> Terms:
    return _plain(TESTS)


@cache
def body_parts() -> Terms:
    """Body sites; ``left knee`` and ``right knee`` share the base ``knee``."""
    return {t: _SIDE.sub("", t) for t in BODY_PARTS}


@cache
def given_names() -> Terms:
    return _plain(GIVEN_NAMES)


@cache
def surnames() -> Terms:
    return _plain(SURNAMES)


@cache
def street_names() -> Terms:
    return _plain(STREET_NAMES)


@cache
def cities() -> Terms:
    return _plain(CITIES)
