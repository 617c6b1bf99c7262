# Generates the simulated listing (crates/tranche-sim/src/listing.rs) and examples/plan-500.json.
# Run from anywhere: python3 xtask/src/universe.py (deterministic: the same output every time).
import json, hashlib, os
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
known = {s for s in "AAPL MSFT NVDA AMZN GOOGL META BRK.B JPM V UNH XOM JNJ PG HD COST TSLA SPY QQQ IWM VTI TLT GLD BND EDZ SQQQ SOXL TQQQ ARKK F SIRI PLUG NIO".split()}
large = """AVGO LLY WMT MA ORCL NFLX ABBV CRM BAC CVX MRK KO PEP ADBE TMO AMD CSCO ACN MCD LIN ABT WFC DHR DIS INTU TXN QCOM PM VZ AMGN IBM CAT GE NOW ISRG NEE UNP SPGI HON AMAT RTX LOW GS PFE UBER CMCSA BKNG T AXP PGR BLK SYK ELV TJX VRTX MS LMT C SCHW BSX ADP MDT REGN PLD MMC CB ETN ADI BX DE PANW SBUX KLAC LRCX GILD MU CI AMT MDLZ BMY SO FI TMUS ZTS SHW CME ICE MO DUK SNPS CDNS EQIX APH CL WM ITW TT PH MCK CVS USB PNC EOG NOC GD CMG ORLY MAR TDG BDX FDX SLB PYPL CSX EMR NSC AON MPC PSX MMM ROP HCA APD ECL AJG WELL AZO TGT ADSK CARR COF NXPI PCAR SRE TRV AFL OKE AIG KMB MET""".split()
mid = """DECK WSM EME CSL RS BLDR JBL LII OC WSO FIX GGG ACM TOL NBIX RPM UTHR CASY PSTG MANH LECO USFD ELS AMH CUBE TTEK CW SAIA ITT XPO BJ GLPI DKS WMS RGA EWBC RRX PFGC CLH SCI NVT JLL FND CHDN WWD ATR EHC SF TXRH BWXT LAMR CACI KNSL OVV AFG SKX CG EXP UNM CHE BRBR ONTO MUSA FHN AYI CIEN WBS TPX PRI DCI AIT ORI NYT SEIC MTZ CNM KBR HRB GPK INGR RBC MEDP WTRG CR AXTA FLS MORN EXEL VOYA ALV MIDD TTC SNX OSK HQY DUOL RLI CBSH TREX PB SSB FAF ESAB MTG ZION KEX RYAN WH CROX SAIC LSTR AGCO ESNT MSA FR CGNX GNTX DAR BERY LFUS THO WFRD JAZZ STAG ALK LPX MTSI FCN CYTK H EXLS MAT R NOV BIO WEX""".split()
small = """AAON ABCB ACIW ACLS ADMA AEIS AGYS ALKS ALRM AMN AMPH ANIP AORT APOG ARCB ARLO AROC ASTE ATGE AVAV AWR AX AZZ BANF BCPC BGS BHE BKE BL BMI BOOT BOX BRC CAKE CALM CARG CATY CBU CCOI CENX CEVA CHCO CNMD COHU CORT CPRX CRVL CSGS CTRE CVBF CVCO CWT DIOD DNOW DORM DV DXPE ECPG EPAC EPC ESE EVTC FBP FELE FORM FSS FUL GFF GIII GMS GVA HAYW HCSG HLIT HNI HUBG ICHR IDCC IIPR INVA IOSP IPAR ITGR JBSS JJSF KAI KFY KLIC KTB KWR LGND LKFN LMAT LNN LQDT MATX MGEE MGPI MLKN MMSI MYRG NBHC NHC NMIH NPO NSIT NWBI OFG OSIS OTTR OXM PATK PDFS PLAB PLMR PLXS POWL PRGS PRK""".split()
etf_broad = """VOO IVV VEA VWO AGG IEFA IEMG VUG VTV BNDX IJH IJR VIG VXUS EFA XLK XLF XLV XLE XLI XLY XLP XLU XLB XLRE SCHD SCHX IWF IWD RSP SHY IEF LQD HYG EMB MUB TIP VNQ GDX SLV""".split()
etf_thin = """FDLO QDIV SPHB XSMO XSVM ONEQ FDMO QUAL JQUA IQLT SMMV EEMV VLUE SIZE DGRW DTD FVD RDIV SDOG KNG""".split()
etf_lev = """SPXL UPRO SDS SH PSQ QID SSO UDOW SDOW LABU LABD FAS FAZ TNA TZA SOXS TECL TECS YINN NUGT""".split()
rows=[]
def add(lst, cls):
    for s in lst:
        if s in known or any(r[0]==s for r in rows): continue
        rows.append((s, cls))
add(large,"Large"); add(mid,"Mid"); add(small,"Small"); add(etf_broad,"BroadEtf"); add(etf_thin,"ThinEtf"); add(etf_lev,"LeveragedEtf")


known_rows = [
 ("AAPL",22810,True,"Mega"),("MSFT",41520,True,"Mega"),("NVDA",13540,True,"Mega"),("AMZN",20530,True,"Mega"),
 ("GOOGL",17560,True,"Mega"),("META",56020,True,"Mega"),("BRK.B",47050,True,"Large"),("JPM",22040,True,"Large"),
 ("V",31080,True,"Large"),("UNH",51260,True,"Large"),("XOM",11730,True,"Large"),("JNJ",15810,True,"Large"),
 ("PG",16940,True,"Large"),("HD",40120,True,"Large"),("COST",91350,True,"Large"),("TSLA",33890,True,"Mega"),
 ("SPY",59030,True,"BroadEtf"),("QQQ",50510,True,"BroadEtf"),("IWM",22540,True,"BroadEtf"),("VTI",29120,True,"BroadEtf"),
 ("TLT",9210,True,"BroadEtf"),("GLD",24530,True,"BroadEtf"),("BND",7240,True,"BroadEtf"),("EDZ",952,False,"LeveragedEtf"),
 ("SQQQ",781,False,"LeveragedEtf"),("SOXL",2810,False,"LeveragedEtf"),("TQQQ",7890,False,"LeveragedEtf"),("ARKK",5520,True,"Mid"),
 ("F",1052,True,"Large"),("SIRI",2410,True,"Mid"),("PLUG",212,True,"Small"),("NIO",441,True,"Small"),
]
rows = rows[:500-len(known_rows)]
ranges = {"Large":(4000,60000),"Mid":(2000,30000),"Small":(500,12000),"BroadEtf":(3000,55000),"ThinEtf":(2000,8000),"LeveragedEtf":(500,15000)}
def h(s, salt):
    return int(hashlib.sha256((salt+s).encode()).hexdigest()[:12],16)
table=list(known_rows)
for s,cls in rows:
    lo,hi=ranges[cls]
    # log-uniform price in the class's range
    import math
    u=(h(s,"price")%10000)/10000
    cents=int(round(math.exp(math.log(lo)+u*(math.log(hi)-math.log(lo)))))
    frac = True
    if cls in ("Small","ThinEtf","LeveragedEtf"):
        frac = h(s,"frac")%10 >= 3
    table.append((s,cents,frac,cls))
assert len(table)==500 and len({t[0] for t in table})==500
out=["//! The simulated listing: 500 US-listed names (mega, large, mid and small caps; broad, thin and","//! leveraged ETFs), each with its liquidity class, a starting price and whether it trades in","//! fractions. The names are real tickers of the kind their class says; the prices are invented","//! (log-uniform in the class's usual range, fixed by the name) and the classes are typical, not","//! measured. The first 32 are the names earlier tests and examples used, at their old prices.","//!","//! Invariants: every symbol once; prices in cents, positive; generated by","//! `xtask/src/universe.py` (which also writes `examples/plan-500.json`).","","use crate::realism::NameClass;","","/// (symbol, starting price in cents, fractionable, liquidity class).","pub(crate) const LISTING: &[(&str, i64, bool, NameClass)] = &["]
for s,c,f,cls in table:
    out.append(f'    ("{s}", {c}, {"true" if f else "false"}, NameClass::{cls}),')
out.append("];")
open(ROOT + "/crates/tranche-sim/src/listing.rs","w").write("\n".join(out)+"\n")
print("nonfrac", sum(1 for t in table if not t[2]))

# The plan: a direct-indexing rebalance of a $1.5M portfolio over the 500 names.
import random
rng=random.Random(500)
items=[]; total=0
cash=25000
for s,c,f,cls in table:
    cur = round(rng.uniform(800,5200),2)
    r = rng.random()
    if r < 0.02:
        action,amount,tw = "SELL", -cur, "0"
    elif r < 0.42:
        action,amount,tw = "SELL", -round(cur*rng.uniform(0.03,0.35),2), None
    elif r < 0.84:
        action,amount,tw = "BUY", round(rng.uniform(60,1400),2), None
    else:
        action,amount,tw = "HOLD", 0, None
    items.append((s,cur,action,amount,tw))
    total+=cur
total+=cash
plan_items=[]
for s,cur,action,amount,tw in items:
    tv = cur+amount
    cw = cur/total; tgt = tv/total
    plan_items.append({"symbol":s,"current_weight":f"{cw:.6f}","target_weight":tw if tw is not None else f"{tgt:.6f}","target_value":f"{tv:.2f}","current_value":f"{cur:.2f}","trade_amount":f"{amount:.2f}","action":action})
plan={"plan_id":"example-direct-index-500","correlation_id":"example-500","causation_id":"xtask/src/universe.py","timestamp":"2026-03-02T14:40:00Z","total_portfolio_value":f"{total:.2f}","items":plan_items}
json.dump(plan, open(ROOT + "/examples/plan-500.json","w"), indent=1)
from collections import Counter
print(Counter(i[2] for i in items), "buys $", round(sum(i[3] for i in items if i[2]=="BUY")), "sells $", round(-sum(i[3] for i in items if i[2]=="SELL")))
