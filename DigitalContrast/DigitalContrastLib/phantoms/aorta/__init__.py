"""The aorta IFU's phantom patient: CT of the trunk from the aortic arch to the hips, with the aorta.

Drawn in millimetres in the patient's LPS frame (midline x = 0; the grid is re-centred on the
body's anteroposterior middle), top to bottom: the body outline with skin, subcutaneous fat and
abdominal wall, psoas, quadratus and erector spinae (:mod:`.body`); iliac wings with iliacus and
gluteal muscles, hip joints (:mod:`.skeleton`); diaphragm and lung bases (:mod:`.body`); liver,
gallbladder, spleen, stomach, kidneys, bladder (:mod:`.organs`); the spine (lumbar and thoracic
bodies, discs, arches, sacrum) and ribs (:mod:`.skeleton`); then the vessels: IVC and iliac veins,
pancreas, portal system and renal veins (:mod:`.veins`), renal arteries, SMA with mesenteric
branches, coeliac trunk with hepatic and splenic arteries, and the aorta along a curving centre
line with a radius profile and an optional fusiform infrarenal aneurysm (probability
``ANEURYSM_PROBABILITY``, 0.7: a sac of maximum outer diameter U(35, 80) mm with an eccentric
crescent of intraluminal thrombus whose thickness and side vary along z), iliac arteries and
calcified plaques in the wall (:mod:`.arteries`); the colon and small-bowel loops in the free fat
(:mod:`.bowel`); last the chest above the right dome (:mod:`.chest`: upper ribs and sternum, heart,
ascending aorta and arch, pulmonary arteries, superior vena cava, oesophagus), where the descending
aorta runs beside the thoracic spine, then the thoracic aorta's surroundings (the left lung against
it, a soft-tissue sleeve round it). The chest draws from its own random streams, so it left the
abdomen as it was; it is seen when the grid is centred higher
(``make_phantom(center_z_mm=CHEST_CENTER_Z_MM)``).

The patient is first sampled, every random value at once, into one :class:`~.layout.AortaLayout`
(:func:`~.build.sample_layout`), then painted and recorded (:func:`~.build.build_aorta`,
:mod:`.record`). The order of the random draws is part of
:data:`~DigitalContrastLib.phantoms.generator.GENERATOR_VERSION`: changing it changes every phantom.
Label codes live in :mod:`DigitalContrastLib.ct.labels`, HU tables in
:mod:`DigitalContrastLib.phantoms.hu_tables`.
"""
