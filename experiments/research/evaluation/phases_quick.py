"""Quick check (not a registered task): segment_phases + measure_phases on coating_scan seeds 1000-1005 (untuned; nothing was tuned). Run: PYTHONPATH=. python -m experiments.research.evaluation.phases_quick"""
import numpy as np, time
from data.synthetic_phases import coating_scan
from segmentation.phases import PhasesConfig, segment_phases
from data.standards.phases import PhaseMeasureConfig, measure_phases
names=("pore","oxide","coating","substrate")
for seed in range(1000,1006):
    t=coating_scan(shape=(512,512),seed=seed,thickness_px=200.0)
    lab=segment_phases(t.image,PhasesConfig(names=names),pixel_size_um=t.pixel_size_um)
    m=measure_phases(lab,names=names,pixel_size_um=t.pixel_size_um,cfg=PhaseMeasureConfig(coating="coating",substrate="substrate"))
    fr=m.fractions.set_index("phase")["area_fraction"]
    err={k:round(100*(fr[k]-t.fractions[k]),2) for k in names}
    c=m.coating.iloc[0]
    print(seed,err,"por",round(100*(c.porosity-t.porosity),2),"thk%",round(100*(c.thickness_mean_um/t.thickness_mean_um-1),2))
